/**
 * Imago's TypeScript loader: tsx, plus a hook (`own-source.js`) that transforms Imago's own files
 * without tsx's keep-names wrappers. Every Imago process loads through it (`bin/imago.js`, and
 * `node --import <this file>` for the processes Imago forks: ingress workers, bench children, the
 * converter, the test runner), so what is measured is what runs.
 * Plain JavaScript because it has to run before anything TypeScript can be loaded.
 */
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

registerTsx();
// Hooks chain last-registered first: this one sees Imago's files before tsx does, and hands
// everything else (and all resolution) to tsx.
register('./own-source.js', import.meta.url);
