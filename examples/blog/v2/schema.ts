/** Blog v2's names, as its Drizzle schema declares them (migration.sql); posts gain a slug. */
import type { BlogSchema } from '../schema.js';

export const schemaV2: BlogSchema = {
  version: 2,
  migration: new URL('./migration.sql', import.meta.url),
  marker: 'post_tags',
  user: {
    table: 'users',
    id: 'id',
    email: 'email',
    name: 'display_name',
    createdAt: 'created_at',
    updatedAt: 'updated_at',
  },
  post: {
    table: 'posts',
    id: 'id',
    authorId: 'author_id',
    title: 'title',
    content: 'body',
    published: 'published',
    createdAt: 'created_at',
    updatedAt: 'updated_at',
    slug: 'slug',
  },
  tag: { table: 'tags', id: 'id', name: 'name' },
  postTag: { table: 'post_tags', postId: 'post_id', tagId: 'tag_id', assignedAt: 'assigned_at' },
};
