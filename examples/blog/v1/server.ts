/**
 * Blog v1, the Prisma-built version: `DB_HOST=… DB_PORT=… DB_USERNAME=… DB_PASSWORD=… DB_NAME=…
 * PORT=3000 node --import tsx examples/blog/v1/server.ts`.
 */
import { runBlog } from '../app.js';
import { schemaV1 } from './schema.js';

void runBlog(schemaV1);
