// Logging is injected: the server passes its structured logger; the default writes one JSON object
// per line to stderr, as the rest of Capstan does.

export type LogLevel = 'info' | 'warn' | 'error';
export type WalLogger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export const stderrLogger: WalLogger = (level, msg, fields) => {
  process.stderr.write(JSON.stringify({ level, ts: new Date().toISOString(), msg, ...fields }) + '\n');
};
