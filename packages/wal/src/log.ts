// Logging is injected: the server passes its structured logger; the default writes one JSON object
// per line to stderr, as the rest of Capstan does.

export type LogLevel = 'info' | 'warn' | 'error';
export type WalLogger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export const stderrLogger: WalLogger = (level, msg, fields) => {
  process.stderr.write(JSON.stringify({ level, ts: new Date().toISOString(), msg, ...fields }) + '\n');
};

/** Milliseconds as Go prints a time.Duration: 850ns, 12.5µs, 103.2ms, 1.5s, 2m3s. */
export function goDuration(ms: number): string {
  if (ms < 0) return `-${goDuration(-ms)}`;
  if (ms === 0) return '0s';
  if (ms < 0.001) return `${trim((ms * 1e6).toFixed(0))}ns`;
  if (ms < 1) return `${trim((ms * 1e3).toFixed(3))}µs`;
  if (ms < 1000) return `${trim(ms.toFixed(6))}ms`;
  const s = ms / 1000;
  if (s < 60) return `${trim(s.toFixed(9))}s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = `${m}m${trim((s % 60).toFixed(9))}s`;
  return h > 0 ? `${h}h${rest}` : rest;
}

function trim(fixed: string): string {
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
}
