// Chart.js with only the parts the metrics charts use: imported dynamically.
import {
	Chart,
	LineController,
	LineElement,
	PointElement,
	LinearScale,
	CategoryScale,
	Filler,
	Tooltip,
	Legend
} from 'chart.js';

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Filler, Tooltip, Legend);
export { Chart };

/** A chart of one filled series over time, as the dashboard draws them. */
export type LineChart = Chart<'line', number[], string>;

/**
 * lineChart draws one filled series on el in the system's light or dark theme; y
 * formats the values on its axis. A count (whole numbers that hold until they change:
 * running sandboxes, reserved vCPUs) gets integer ticks and steps between points.
 */
export function lineChart(el: HTMLCanvasElement, label: string, color: string, y: (v: number) => string, count = false): LineChart {
	const grid = matchMedia('(prefers-color-scheme: dark)').matches ? '#3f3f46' : '#e4e4e7';
	return new Chart(el, {
		type: 'line',
		data: {
			labels: [] as string[],
			datasets: [{ label, data: [] as number[], borderColor: color, backgroundColor: color + '33', fill: true, pointRadius: 0, borderWidth: 1.5, stepped: count }]
		},
		options: {
			animation: false,
			responsive: true,
			maintainAspectRatio: false,
			interaction: { mode: 'index', intersect: false },
			plugins: { legend: { display: false } },
			scales: {
				x: { ticks: { maxTicksLimit: 6 }, grid: { color: grid } },
				y: { beginAtZero: true, ticks: { ...(count ? { precision: 0 } : {}), callback: (v: string | number) => y(Number(v)) }, grid: { color: grid } }
			}
		}
	});
}
