// Formatting for people.

/** age says how long ago iso was, briefly: "12 s", "5 min", "3 h", "2 d". */
export function age(iso: string | undefined, now = Date.now()): string {
	if (!iso) return '—';
	const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
	if (s < 60) return `${s} s`;
	if (s < 3600) return `${Math.floor(s / 60)} min`;
	if (s < 86400) return `${Math.floor(s / 3600)} h`;
	return `${Math.floor(s / 86400)} d`;
}

export function mib(n: number): string {
	return n >= 1024 && n % 1024 === 0 ? `${n / 1024} GiB` : `${n} MiB`;
}

export function bytes(n: number): string {
	const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
	let i = 0;
	while (n >= 1024 && i < u.length - 1) {
		n /= 1024;
		i++;
	}
	return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${u[i]}`;
}

export function dateTime(iso: string | undefined): string {
	return iso ? new Date(iso).toLocaleString() : '—';
}

/** Tailwind classes of a sandbox status badge. */
export function statusClass(s: string): string {
	switch (s) {
		case 'running':
			return 'bg-emerald-100 text-emerald-800 dark:bg-emerald-900/50 dark:text-emerald-300';
		case 'paused':
			return 'bg-sky-100 text-sky-800 dark:bg-sky-900/50 dark:text-sky-300';
		case 'error':
		case 'missing':
			return 'bg-red-100 text-red-800 dark:bg-red-900/50 dark:text-red-300';
		case 'stopped':
			return 'bg-zinc-100 text-zinc-600 dark:bg-zinc-800 dark:text-zinc-400';
		default:
			return 'bg-amber-100 text-amber-800 dark:bg-amber-900/50 dark:text-amber-300';
	}
}
