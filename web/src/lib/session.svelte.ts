// Who is signed in (GET /v1/me), shared by the app shell and the pages.
import { csrfToken, me as fetchMe, toLogin, type Me } from '$lib/api/client';

class Session {
	me = $state<Me | null>(null);
	error = $state<unknown>(null);
	loading = $state(false);

	async load() {
		// Every session comes with its readable CSRF cookie: without one there is no
		// session to ask about, so a signed-out visit goes to /login without a request
		// that could only answer 401.
		if (!csrfToken()) {
			this.me = null;
			toLogin();
			return;
		}
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
