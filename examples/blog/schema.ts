/**
 * How a blog version names its tables and columns. Both versions store the same things — users,
 * posts, tags and the tags of each post — under their ORM's names (Prisma's `"User"."createdAt"`,
 * Drizzle's `users.created_at`), so one store (store.ts) serves both, given the names.
 */
export interface BlogSchema {
  version: number;
  /** The version's migration, run on start when `marker` does not exist yet. */
  migration: URL;
  /** A table the migration creates: present means migrated. */
  marker: string;
  user: { table: string; id: string; email: string; name: string; createdAt: string; updatedAt: string };
  post: {
    table: string;
    id: string;
    authorId: string;
    title: string;
    content: string;
    published: string;
    createdAt: string;
    updatedAt: string;
    /** A column the version derives from the title and id (postSlug), if it has one. */
    slug?: string;
  };
  tag: { table: string; id: string; name: string };
  postTag: { table: string; postId: string; tagId: string; assignedAt: string };
}
