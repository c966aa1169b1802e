/**
 * Blog v1 running as its own, non-superuser role owning its tables, as a real deployment would: what
 * revoke fencing needs (a superuser's writes cannot be revoked).
 */
import { createAppRole } from '../wiki/app-role.js';
import { settingsFromUrl, type DatabaseSettings } from './db.js';

export const BLOG_APP_ROLE = 'blog_app';

/** Creates the role, hands it v1's tables, and returns the settings the app should connect with. */
export async function createBlogAppRole(adminUrl: string): Promise<DatabaseSettings> {
  return settingsFromUrl(
    await createAppRole(adminUrl, BLOG_APP_ROLE, ['_prisma_migrations', 'User', 'Post', 'Tag', 'PostTag']),
  );
}
