/**
 * Runs wrk (Debian's wrk 4.1) against a URL and parses requests/s and the p99 latency. wrk is the load
 * generator because it costs far less CPU than a Node one on a 2-core machine, where every cycle the
 * generator takes is missing from the proxy under test.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface WrkResult {
  rps: number;
  /** Requests completed in the run. */
  requests: number;
  p99Ms: number;
  errors: number;
}

function toMs(value: string, unit: string): number {
  const v = Number(value);
  if (unit === 'us') return v / 1000;
  if (unit === 's') return v * 1000;
  if (unit === 'm') return v * 60_000;
  return v;
}

export function parseWrk(text: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s|m)\b/.exec(text);
  if (!rps || !p99) throw new Error(`could not parse wrk output:\n${text}`);
  const total = /(\d+) requests in /.exec(text);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors =
    Number(non2xx?.[1] ?? 0) + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return {
    rps: Number(rps[1]),
    requests: Number(total?.[1] ?? 0),
    p99Ms: toMs(p99[1] as string, p99[2] as string),
    errors,
  };
}

/** Writes the Lua script that turns wrk's GET into a 4 KB JSON POST. */
export async function writePostScript(dir: string): Promise<string> {
  const path = join(dir, 'post.lua');
  const body = JSON.stringify({ data: 'x'.repeat(4096 - 12) });
  await writeFile(
    path,
    `wrk.method = "POST"\nwrk.body = '${body}'\nwrk.headers["Content-Type"] = "application/json"\n`,
  );
  return path;
}

export function runWrk(
  url: string,
  opts: { seconds: number; connections: number; threads: number; script?: string },
): Promise<WrkResult> {
  const args = [`-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency'];
  if (opts.script) args.push('-s', opts.script);
  args.push(url);
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { timeout: (opts.seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) {
        // What wrk said ("unable to connect to 127.0.0.1:…"), not node's "Command failed: …" echo.
        const said = `${stderr}\n${stdout}`.trim().split('\n').slice(0, 4).join('; ');
        const how = err.killed
          ? `was stopped after ${opts.seconds + 30} s`
          : `exited with ${err.signal ?? `code ${err.code}`}`;
        reject(new Error(`wrk ${how}${said ? `: ${said}` : ''}`));
      } else {
        try {
          resolve(parseWrk(stdout));
        } catch (e) {
          reject(e as Error);
        }
      }
    });
  });
}
