/**
 * Prepares an old universe by hand: `node --import tsx examples/blog/setup.ts <admin database URL>`
 * migrates and seeds blog v1's database, creates its role `blog_app`, and prints the variables v1
 * runs with.
 */
import { createBlogAppRole } from './app-role.js';
import { settingsEnv } from './db.js';
import { seedBlog } from './seed.js';

const [adminUrl] = process.argv.slice(2);
if (!adminUrl) {
  console.error('usage: node --import tsx examples/blog/setup.ts postgresql://user:password@host:port/blog');
  process.exit(2);
}
try {
  const seeded = await seedBlog(adminUrl);
  console.error(`seeded ${seeded.users} users, ${seeded.posts} posts, ${seeded.postTags} post tags`);
  for (const [name, value] of Object.entries(settingsEnv(await createBlogAppRole(adminUrl))))
    console.log(`export ${name}=${value}`);
} catch (err) {
  console.error(`setup: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
