/**
 * `imago ingress`: runs one ingress node — the proxy every client request passes through during an
 * upgrade — until stopped. The driver reaches it through its control endpoint (loopback, bearer
 * token), which a plan lists under `ingress.nodes`. The token comes from the environment, never the
 * command line (which `ps` shows to every user). The node's route, epoch, hold and upstreams are
 * kept in a state file, so that a node restarted mid-upgrade resumes what its driver last decided.
 */
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { ImagoError } from '../../errors.js';
import { count } from '../arguments.js';
import { BALANCES, startIngress, startIngressCluster, type Balance } from '../../ingress/index.js';
import { upstreamUrlProblem } from '../../ingress/upstream-url.js';
import { onTeardown } from '../../universe/teardown.js';
import { output, reportError } from '../output.js';

const TOKEN_ENV = 'IMAGO_INGRESS_TOKEN';

function hostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new InvalidArgumentError('expected host:port or a port, e.g. 0.0.0.0:8080');
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

function url(value: string, previous: string[] = []): string[] {
  // The rules every backend URL follows, wherever it comes from (upstream-url.ts).
  const problem = upstreamUrlProblem(value);
  if (problem !== undefined)
    throw new InvalidArgumentError(`${problem}: expected an http:// URL such as http://127.0.0.1:3000`);
  return [...previous, value];
}

function balance(value: string): Balance {
  const found = BALANCES.find((b) => b === value);
  if (found === undefined) throw new InvalidArgumentError(`expected ${BALANCES.join(' or ')}`);
  return found;
}

function healthPath(value: string): string {
  if (!value.startsWith('/'))
    throw new InvalidArgumentError('expected a path starting with /, e.g. /healthz');
  return value;
}

export function registerIngress(program: Command): void {
  program
    .command('ingress')
    .description(
      `run an ingress node (the proxy clients go through) until stopped; control token from $${TOKEN_ENV}`,
    )
    .requiredOption('--old <url>', 'a backend of the old universe (repeat for several)', url)
    .option('--new <url>', 'a backend of the new universe (usually set later by the driver)', url)
    .option('--name <name>', 'the node name the plan uses (ingress.nodes[].name)', 'edge-1')
    .option('--listen <host:port>', 'where clients connect', hostPort, hostPort('127.0.0.1:8080'))
    .option('--control-port <port>', 'the control endpoint’s port (always on 127.0.0.1)', count, 9101)
    .option(
      '--state <file>',
      'where route, epoch, hold and upstreams survive a restart',
      '.imago/ingress-<name>.json',
    )
    .option('--workers <n>', 'processes serving the port (default: one per core)', count)
    .option(
      '--balance <round-robin|least-busy>',
      'how a backend is chosen: in turn, or the one with the fewest requests under way',
      balance,
      'round-robin',
    )
    .option(
      '--health-path <path>',
      'check every backend with GET <path>; one not answering 2xx leaves the rotation',
      healthPath,
    )
    .option('--health-interval <ms>', 'time between two checks of a backend (default: 2000)', count)
    .option(
      '--request-timeout <ms>',
      'time a client has to send a whole request, body included, from its first byte (default: 60000)',
      count,
    )
    .option(
      '--headers-timeout <ms>',
      'time a client has to send a request head, from its first byte (default: 10000)',
      count,
    )
    .option(
      '--idle-timeout <ms>',
      'an idle keep-alive client connection is closed after (default: 5000)',
      count,
    )
    .option('--json', 'once listening, one JSON line on stdout with the addresses')
    .action(async (opts) => {
      const out = output(Boolean(opts.json));
      try {
        const token = process.env[TOKEN_ENV];
        if (!token || token.length < 16)
          throw new ImagoError(
            `the control token is ${token ? 'shorter than 16 characters' : 'not set'}`,
            TOKEN_ENV,
            `export ${TOKEN_ENV}=$(openssl rand -hex 24), and give the same token in the plan`,
          );
        if (opts.healthInterval !== undefined && opts.healthPath === undefined)
          throw new ImagoError(
            '--health-interval is given without --health-path',
            '--health-interval',
            'add --health-path /your/health/endpoint, or drop --health-interval',
          );
        const state = resolve(String(opts.state).replace('<name>', opts.name));
        mkdirSync(dirname(state), { recursive: true });
        const interval: number = opts.healthInterval ?? 2_000;
        const workers: number = opts.workers ?? availableParallelism();
        const options = {
          host: opts.listen.host,
          port: opts.listen.port,
          upstreams: { old: opts.old as string[], ...(opts.new ? { new: opts.new as string[] } : {}) },
          route: 'old' as const,
          control: { token, port: opts.controlPort as number, store: state, nodeId: opts.name as string },
          balance: opts.balance as Balance,
          limits: {
            requestTimeoutMs: opts.requestTimeout as number | undefined,
            headersTimeoutMs: opts.headersTimeout as number | undefined,
            idleTimeoutMs: opts.idleTimeout as number | undefined,
          },
          ...(opts.healthPath === undefined
            ? {}
            : {
                healthCheck: { path: opts.healthPath as string, intervalMs: interval },
              }),
        };
        const node = await (
          workers > 1 ? startIngressCluster({ ...options, workers }) : startIngress(options)
        ).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EADDRINUSE' && err.code !== 'EACCES' && err.code !== 'EADDRNOTAVAIL') throw err;
          throw new ImagoError(
            `cannot listen: ${err.message}`,
            `${opts.listen.host}:${opts.listen.port} or control port ${opts.controlPort}`,
            'choose free ports with --listen and --control-port',
          );
        });
        onTeardown(`ingress ${opts.name}`, () => node.close());
        out.say(
          `ingress ${opts.name}: clients on ${node.url} (${workers} process${workers > 1 ? 'es' : ''}), route ${node.route()}`,
        );
        out.say(
          `  balance ${opts.balance}; ${opts.healthPath === undefined ? 'no health checks' : `health checks GET ${opts.healthPath} every ${interval} ms`}`,
        );
        out.say(`  control on ${node.control?.url} (its token in $${TOKEN_ENV}); state in ${state}`);
        out.say('  stop with Ctrl-C or SIGTERM');
        out.result({
          name: opts.name,
          url: node.url,
          control: node.control?.url,
          route: node.route(),
          workers,
          state,
          pid: process.pid,
        });
      } catch (err) {
        process.exitCode = reportError(err, out.json);
      }
    });
}
