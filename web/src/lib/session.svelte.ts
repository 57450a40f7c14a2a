// Who is signed in (GET /v1/me), shared by the app shell and the pages.
import { me as fetchMe, type Me } from '$lib/api/client';

class Session {
	me = $state<Me | null>(null);
	error = $state<unknown>(null);
	loading = $state(false);

	async load() {
		this.loading = true;
		this.error = null;
		try {
			this.me = await fetchMe();
		} catch (e) {
			this.error = e;
		} finally {
			this.loading = false;
		}
	}

	clear() {
		this.me = null;
	}
}

export const session = new Session();
