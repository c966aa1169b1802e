/**
 * The wiki's conversion in its own process, as the driver runs it apart from the ingress nodes:
 * prepare, copy and stream on `start`, then answer `catchUp` requests (the runtime test's barrier)
 * over IPC, and stop on `stop`. Keeps the conversion's CPU out of the ingress process the benchmark
 * measures.
 */
import { Converter } from '../conversion/converter.js';
import wikiConversion from '../../examples/wiki/conversion.js';

export type ConverterRequest =
  | { cmd: 'start'; sourceUrl: string; targetUrl: string; name: string }
  | { cmd: 'catchUp' | 'readFence'; id: number; timeoutMs: number }
  | { cmd: 'stop' };

export type ConverterReply = { id: number; ok: true } | { id: number; ok: false; error: string };

let converter: Converter | undefined;
const reply = (r: ConverterReply) => process.send?.(r);
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

process.on('message', (m: ConverterRequest) => {
  void (async () => {
    if (m.cmd === 'start') {
      try {
        converter = new Converter({
          sourceUrl: m.sourceUrl,
          targetUrl: m.targetUrl,
          conversion: wikiConversion,
          name: m.name,
        });
        await converter.prepare();
        await converter.copy();
        await converter.startStreaming((err) => process.send?.({ id: -1, ok: false, error: message(err) }));
        reply({ id: 0, ok: true });
      } catch (err) {
        reply({ id: 0, ok: false, error: message(err) });
      }
    } else if (m.cmd === 'catchUp' || m.cmd === 'readFence') {
      try {
        if (!converter) throw new Error('conversion not started');
        await (m.cmd === 'catchUp' ? converter.catchUp(m.timeoutMs) : converter.readFence(m.timeoutMs));
        reply({ id: m.id, ok: true });
      } catch (err) {
        reply({ id: m.id, ok: false, error: message(err) });
      }
    } else {
      await converter?.stop({ dropCapture: true }).catch(() => {});
      converter = undefined;
      reply({ id: 0, ok: true });
    }
  })();
});
process.on('disconnect', () => {
  void (converter?.stop({ dropCapture: true }) ?? Promise.resolve()).finally(() => process.exit(0));
});
