// Prints the gzip size of what a first visit to a page loads: index.html, kit's entry
// and the page's route nodes (layouts + page), each with its static imports and CSS;
// dynamic imports (xterm.js, Chart.js) are not part of it. Run after `vite build`:
//   node scripts/first-load-size.mjs [route-file-suffix]   (default: sandboxes page)
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const out = '.svelte-kit/output/client/';
const manifest = JSON.parse(readFileSync(out + '.vite/manifest.json', 'utf8'));
const page = process.argv[2] ?? 'src/routes/(app)/sandboxes/+page.svelte';
// Route nodes of the page: the root layout, the (app) group's layout and the page.
const want = ['src/routes/+layout.svelte', 'src/routes/(app)/+layout.svelte', page];
const seen = new Set();
const files = new Set(['index.html']);
function walk(key) {
	if (seen.has(key)) return;
	seen.add(key);
	const c = manifest[key];
	if (!c) return;
	files.add(c.file);
	for (const css of c.css ?? []) files.add(css);
	for (const i of c.imports ?? []) walk(i);
}
for (const [k, c] of Object.entries(manifest)) {
	if (c.isEntry && !k.includes('client-optimized/nodes/')) walk(k);
	// The generated node modules name their component in src (src/routes/...).
	if (k.includes('client-optimized/nodes/')) {
		const src = readFileSync(k, 'utf8');
		if (want.some((w) => src.includes(`"../../../../${w}"`) || src.includes(`"../../../${w}"`))) walk(k);
	}
}
let total = 0;
const rows = [];
for (const f of files) {
	const b = readFileSync(f === 'index.html' ? 'build/index.html' : out + f);
	const g = gzipSync(b, { level: 9 }).length;
	total += g;
	rows.push([g, b.length, f]);
}
rows.sort((a, b) => b[0] - a[0]);
for (const [g, raw, f] of rows) console.log(`${String(g).padStart(7)} ${String(raw).padStart(8)}  ${f}`);
console.log(`first load of ${page}: ${rows.length} files, ${(total / 1024).toFixed(1)} KiB gzip`);
