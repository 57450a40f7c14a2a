// xterm.js and its stylesheet: imported dynamically (Terminal.svelte), so only the
// terminal tab loads them.
import '@xterm/xterm/css/xterm.css';
export { Terminal } from '@xterm/xterm';
export { FitAddon } from '@xterm/addon-fit';
