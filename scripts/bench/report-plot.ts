/**
 * The report's plot, rendered headless by vega-lite + vega (no canvas, no browser): two panels,
 * ordered-multicast throughput against message size (log axis, 3 members) and against group size
 * (3, 5, 7 members), each beside Node net's one-stream loopback bandwidth from the same run.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';

/** What `bench:multicast --sweep` prints as its last line (the parts plotted). */
export interface SweepSummary {
  by_size: { size_bytes: number; members: number; MBps: number }[];
  by_members: { members: number; MBps: number; rdmc_1MiB_MBps: number; rdmc_16MiB_MBps: number }[];
  baseline: { net_MBps: number };
}

const MiB = 1024 * 1024;

type Panel = Extract<vl.TopLevelSpec, { hconcat: unknown }>['hconcat'][number];

/** One line chart of delivered MB/s (log) against `x`, a line per series. */
function panel(title: string, width: number, values: Record<string, unknown>[], x: Record<string, unknown>): Panel {
  return {
    title,
    width,
    height: 260,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x,
      y: { field: 'MBps', type: 'quantitative', scale: { type: 'log' }, title: 'delivered MB/s (log)' },
      color: { field: 'series', type: 'nominal', legend: { orient: 'bottom', direction: 'vertical', title: null } },
    },
  } as Panel;
}

export async function renderThroughputSvg(s: SweepSummary): Promise<string> {
  const three = s.by_members.find((m) => m.members === 3);
  const bySize = [
    ...s.by_size.map((p) => ({ size_bytes: p.size_bytes, MBps: p.MBps, series: 'Tempest, every member sending (SMC)' })),
    ...(three ? [{ size_bytes: MiB, MBps: three.rdmc_1MiB_MBps, series: 'Tempest, one sender (RDMC)' }, { size_bytes: 16 * MiB, MBps: three.rdmc_16MiB_MBps, series: 'Tempest, one sender (RDMC)' }] : []),
    ...[s.by_size[0]?.size_bytes ?? 64, 16 * MiB].map((size_bytes) => ({ size_bytes, MBps: s.baseline.net_MBps, series: 'Node net, one stream (baseline)' })),
  ];
  const byMembers = s.by_members.flatMap((m) => [
    { members: m.members, MBps: m.MBps, series: '1 KiB, every member sending' },
    { members: m.members, MBps: m.rdmc_16MiB_MBps, series: '16 MiB RDMC, one sender' },
    { members: m.members, MBps: s.baseline.net_MBps, series: 'Node net, one stream (baseline)' },
  ]);
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    hconcat: [
      panel('Throughput against message size (3 members)', 380, bySize, { field: 'size_bytes', type: 'quantitative', scale: { type: 'log' }, title: 'message size (bytes, log)' }),
      panel('Throughput against group size', 300, byMembers, { field: 'members', type: 'quantitative', scale: { domain: [3, 7] }, axis: { values: [3, 5, 7] }, title: 'members' }),
    ],
    resolve: { scale: { color: 'independent' } },
  };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
