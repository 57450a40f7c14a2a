// A client-only single-page app: the Go server serves one index.html for every page.
export const ssr = false;
export const prerender = false;
export const trailingSlash = 'never';
