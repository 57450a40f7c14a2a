import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

/** @type {import('@sveltejs/kit').Config} */
const config = {
	preprocess: vitePreprocess(),
	kit: {
		// A single-page app: no page is prerendered; every path the Go server does not own
		// gets the fallback page, and the client router takes it from there.
		adapter: adapter({ pages: 'build', assets: 'build', fallback: 'index.html', strict: true }),
		// The fallback page is served at any depth (/sandboxes/abc): asset URLs must be absolute.
		paths: { relative: false },
		// Kit's bootstrap is an inline <script>; 'hash' makes kit put its sha256 in the
		// page's CSP <meta>. The Go server (internal/server/dashboard) sends the same
		// policy as a header, with the hash it computes from the built index.html.
		csp: {
			mode: 'hash',
			directives: {
				'default-src': ['self'],
				'script-src': ['self'],
				'style-src': ['self', 'unsafe-inline'],
				'img-src': ['self', 'data:'],
				'font-src': ['self'],
				'connect-src': ['self'],
				'object-src': ['none'],
				'base-uri': ['self'],
				'form-action': ['self']
			}
		},
		version: { pollInterval: 0 }
	}
};

export default config;
