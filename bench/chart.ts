/**
 * Draws the peer comparison of bench/results/bench-results.json as an SVG bar chart: per workload,
 * events per CPU second of this project and of Telegraf side by side, with their ratio above.
 *
 * `node bench/chart.ts` writes docs/images/bench.svg; `npm run bench` does so after its run.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';

/** The parts of bench-results.json the chart reads. */
export interface ChartInput {
  readonly date: string;
  readonly mode: string;
  readonly machine: { readonly cpu: string; readonly cores: number };
  readonly versions: { readonly node: string; readonly telegraf: string; readonly influxd: string };
  readonly workloads: readonly {
    readonly workload: string;
    readonly ours: { readonly eventsPerCpuSecond: number };
    readonly peer: { readonly eventsPerCpuSecond: number };
    readonly ratioEventsPerCpuSecond: number;
  }[];
}

/** Where the chart goes, for the README. */
export const CHART_FILE = new URL('../docs/images/bench.svg', import.meta.url);

const OURS = '#2b6cb0';
const PEER = '#dd8a2c';
const INK = '#1a202c';
const MUTED = '#5a6473';
const GRID = '#e2e8f0';
const FONT = 'system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif';

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** 12,345 → "12.3k": three significant digits. */
function short(value: number): string {
  if (value >= 1_000_000) return `${Number((value / 1_000_000).toPrecision(3))}M`;
  if (value >= 1_000) return `${Number((value / 1_000).toPrecision(3))}k`;
  return String(Math.round(value));
}

/** A round axis maximum at or above `max`, and its step: 1, 2 or 5 times a power of ten. */
function axis(max: number): { top: number; step: number } {
  const raw = Math.max(max, 1) / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  return { top: Math.ceil(max / step) * step, step };
}

/** The chart as an SVG document. */
export function renderChart(input: ChartInput): string {
  const rows = input.workloads;
  const groupWidth = 120;
  const left = 78;
  const right = 24;
  const top = 96;
  const plotHeight = 300;
  const bottom = 80;
  // Wide enough for the title lines, however few the workloads.
  const width = Math.max(900, left + right + rows.length * groupWidth);
  const height = top + plotHeight + bottom;
  const plotWidth = width - left - right;
  const slot = plotWidth / Math.max(rows.length, 1);
  const bar = Math.min(36, slot / 3);
  const { top: yMax, step } = axis(
    Math.max(...rows.flatMap((r) => [r.ours.eventsPerCpuSecond, r.peer.eventsPerCpuSecond])) * 1.12,
  );
  const y = (value: number) => top + plotHeight - (value / yMax) * plotHeight;
  const out: string[] = [];
  const text = (x: number, yy: number, body: string, attrs = '') =>
    out.push(`<text x="${x.toFixed(1)}" y="${yy.toFixed(1)}" ${attrs}>${escapeXml(body)}</text>`);

  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}" font-size="12" fill="${INK}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
  );
  text(
    left,
    28,
    'Events per CPU second: kube-audit-operator vs Telegraf (higher is better)',
    'font-size="17" font-weight="600"',
  );
  text(
    left,
    48,
    `${input.machine.cpu}, ${input.machine.cores} cores · ${input.date.slice(0, 10)} · ${input.mode} run · ` +
      `Node.js ${input.versions.node} · Telegraf ${input.versions.telegraf} · influxd ${input.versions.influxd}`,
    `fill="${MUTED}"`,
  );
  text(
    left,
    66,
    '400-event batches, 2 in flight, into one influxd, the same points unless "every field"; CPU of the receiving process; ratio = ours / Telegraf',
    `fill="${MUTED}"`,
  );

  // Legend, below the titles.
  const legendX = left;
  out.push(`<rect x="${legendX}" y="78" width="12" height="12" fill="${OURS}"/>`);
  text(legendX + 18, 88.5, 'kube-audit-operator');
  out.push(`<rect x="${legendX + 150}" y="78" width="12" height="12" fill="${PEER}"/>`);
  text(legendX + 168, 88.5, 'Telegraf');

  // Grid and y axis.
  for (let v = 0; v <= yMax + step / 2; v += step) {
    const yy = y(v);
    out.push(
      `<line x1="${left}" x2="${width - right}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="${GRID}"/>`,
    );
    text(left - 8, yy + 4, short(v), `text-anchor="end" fill="${MUTED}"`);
  }
  text(
    18,
    top + plotHeight / 2,
    'events per CPU second',
    `text-anchor="middle" fill="${MUTED}" transform="rotate(-90 18 ${top + plotHeight / 2})"`,
  );

  rows.forEach((r, i) => {
    const centre = left + slot * (i + 0.5);
    const bars = [
      { value: r.ours.eventsPerCpuSecond, colour: OURS, x: centre - bar - 2 },
      { value: r.peer.eventsPerCpuSecond, colour: PEER, x: centre + 2 },
    ];
    for (const b of bars) {
      const yy = y(b.value);
      out.push(
        `<rect x="${b.x.toFixed(1)}" y="${yy.toFixed(1)}" width="${bar.toFixed(1)}" height="${(top + plotHeight - yy).toFixed(1)}" fill="${b.colour}"/>`,
      );
      text(
        b.x + bar / 2,
        yy - 4,
        short(b.value),
        `text-anchor="middle" font-size="11" fill="${MUTED}"`,
      );
    }
    const highest = y(Math.max(r.ours.eventsPerCpuSecond, r.peer.eventsPerCpuSecond));
    text(
      centre,
      highest - 20,
      `${r.ratioEventsPerCpuSecond.toFixed(2)}×`,
      'text-anchor="middle" font-weight="600"',
    );
    const [levels, ...rest] = r.workload.split(', ');
    text(centre, top + plotHeight + 20, levels ?? r.workload, 'text-anchor="middle"');
    rest.forEach((part, i) =>
      text(centre, top + plotHeight + 36 + 16 * i, part, `text-anchor="middle" fill="${MUTED}"`),
    );
  });
  out.push(
    `<line x1="${left}" x2="${width - right}" y1="${top + plotHeight}" y2="${top + plotHeight}" stroke="${MUTED}"/>`,
    '</svg>',
    '',
  );
  return out.join('\n');
}

/** Reads a report and writes the chart. */
export function writeChart(report: ChartInput): void {
  mkdirSync(new URL('./', CHART_FILE), { recursive: true });
  writeFileSync(CHART_FILE, renderChart(report));
}

if (import.meta.main) {
  const report = JSON.parse(
    readFileSync(new URL('./results/bench-results.json', import.meta.url), 'utf8'),
  ) as ChartInput;
  writeChart(report);
  console.log('written: docs/images/bench.svg');
}
