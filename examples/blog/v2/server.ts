/**
 * Blog v2, the Drizzle-built version (snake_case, posts with slugs): the same settings as v1,
 * `node --import tsx examples/blog/v2/server.ts`.
 */
import { runBlog } from '../app.js';
import { schemaV2 } from './schema.js';

void runBlog(schemaV2);
