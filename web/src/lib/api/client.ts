// The dashboard's one way to the control plane's REST API (/v1, same origin).
//
// Sessions are cookies the server sets (POST /v1/auth/session): an HttpOnly session
// cookie the browser sends by itself, and a readable wrenn_csrf cookie whose value every
// state-changing request repeats in X-CSRF-Token. Nothing is kept in localStorage.
import { goto } from '$app/navigation';
import type { components } from './schema';

export type Schemas = components['schemas'];
export type Sandbox = Schemas['Sandbox'];
export type SandboxStatus = Schemas['SandboxStatus'];
export type Snapshot = Schemas['Snapshot'];
export type Team = Schemas['Team'];

/** What GET /v1/me answers. */
export type Me = Schemas['Me'];

/** What POST /v1/auth/session answers (the session contract). */
export interface SessionInfo {
	user: { id: string; email: string; name: string; is_admin: boolean };
	team_id: string;
	role: string;
	csrf_token: string;
}

/** An answer other than 2xx, or no answer: `message` is for people. */
export class ApiError extends Error {
	constructor(
		readonly status: number, // 0: the server was not reached
		readonly code: string,
		message: string,
		/** The whole JSON answer, for routes that say more than the message (a 409's ids). */
		readonly body?: Record<string, unknown>
	) {
		super(message);
		this.name = 'ApiError';
	}
}

const unsafe = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** The wrenn_csrf cookie's value, or '' when there is none. */
export function csrfToken(): string {
	for (const part of document.cookie.split(';')) {
		const [k, ...v] = part.trim().split('=');
		if (k === 'wrenn_csrf') return decodeURIComponent(v.join('='));
	}
	return '';
}

/** Pages a signed-out visitor may see: a 401 there is no reason to go to /login. */
const publicPages = ['/login', '/signup'];

/** safeNext keeps a ?next= to this site's own pages (no //evil.example, no scheme). */
export function safeNext(next: string | null | undefined, fallback = '/sandboxes'): string {
	if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return fallback;
	if (publicPages.some((p) => next === p || next.startsWith(p + '?'))) return fallback;
	return next;
}

/** Sends the browser to /login, to come back to the page it is on. */
export function toLogin() {
	const here = location.pathname + location.search;
	if (publicPages.includes(location.pathname)) return;
	goto('/login?next=' + encodeURIComponent(here), { replaceState: true });
}

export interface RequestOptions {
	/** A 401 is the caller's to handle (sign-in forms), not a trip to /login. */
	no401Redirect?: boolean;
	signal?: AbortSignal;
	query?: Record<string, string | number | boolean | undefined>;
}

/** request calls the API and returns its JSON (undefined for an empty answer). */
export async function request<T = unknown>(
	method: string,
	path: string,
	body?: unknown,
	opts: RequestOptions = {}
): Promise<T> {
	const headers: Record<string, string> = { Accept: 'application/json' };
	if (body !== undefined) headers['Content-Type'] = 'application/json';
	if (unsafe.has(method)) {
		const t = csrfToken();
		if (t) headers['X-CSRF-Token'] = t;
	}
	let url = path;
	if (opts.query) {
		const q = new URLSearchParams();
		for (const [k, v] of Object.entries(opts.query)) if (v !== undefined) q.set(k, String(v));
		const s = q.toString();
		if (s) url += '?' + s;
	}
	let res: Response;
	try {
		res = await fetch(url, {
			method,
			headers,
			body: body === undefined ? undefined : JSON.stringify(body),
			credentials: 'same-origin',
			signal: opts.signal
		});
	} catch (e) {
		if (e instanceof DOMException && e.name === 'AbortError') throw e;
		throw new ApiError(0, 'unreachable', 'Could not reach the Wrenn server. Check your connection and try again.');
	}
	if (res.ok) {
		if (res.status === 204) return undefined as T;
		const text = await res.text();
		return (text ? JSON.parse(text) : undefined) as T;
	}
	const err = await readError(res);
	if (res.status === 401 && !opts.no401Redirect) toLogin();
	throw err;
}

/** readError turns {"error":{"code","message"}} (or anything else) into an ApiError. */
async function readError(res: Response): Promise<ApiError> {
	let code = 'http_' + res.status;
	let message = '';
	let body: Record<string, unknown> | undefined;
	try {
		const b = await res.json();
		if (b && typeof b === 'object') body = b;
		if (b && typeof b === 'object' && b.error) {
			code = String(b.error.code ?? code);
			message = String(b.error.message ?? '');
		}
	} catch {
		/* not JSON */
	}
	if (!message) {
		message =
			res.status === 401
				? 'Your session has ended: sign in again.'
				: res.status === 403
					? 'You are not allowed to do that.'
					: res.status === 404
						? 'Not found.'
						: res.status >= 500
							? `The server failed (${res.status}). Try again in a moment.`
							: `The request failed (${res.status}).`;
	}
	return new ApiError(res.status, code, message, body);
}

/** errorText is what to show people for any thrown value. */
export function errorText(e: unknown): string {
	if (e instanceof ApiError) return e.message;
	if (e instanceof Error) return e.message;
	return String(e);
}

export const api = {
	get: <T>(path: string, opts?: RequestOptions) => request<T>('GET', path, undefined, opts),
	post: <T>(path: string, body?: unknown, opts?: RequestOptions) => request<T>('POST', path, body ?? {}, opts),
	put: <T>(path: string, body?: unknown, opts?: RequestOptions) => request<T>('PUT', path, body ?? {}, opts),
	del: <T>(path: string, opts?: RequestOptions) => request<T>('DELETE', path, undefined, opts)
};

// The session contract's routes.
export const signIn = (email: string, password: string) =>
	api.post<SessionInfo>('/v1/auth/session', { email, password }, { no401Redirect: true });
export const signOut = () => api.del<void>('/v1/auth/session', { no401Redirect: true });
export const me = () => api.get<Me>('/v1/me');
