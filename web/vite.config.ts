import { sveltekit } from '@sveltejs/kit/vite';
import tailwindcss from '@tailwindcss/vite';
import { defineConfig } from 'vite';

// No @types/node for one variable.
const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};

export default defineConfig({
	plugins: [tailwindcss(), sveltekit()],
	server: {
		// `npm run dev` against a local control plane (make up: :8080).
		proxy: {
			'/v1': { target: env.WRENN_URL ?? 'http://127.0.0.1:8080', ws: true, changeOrigin: true }
		}
	},
	build: { chunkSizeWarningLimit: 600 }
});
