/** Blog v1's names, as Prisma generates them from its models (migration.sql). */
import type { BlogSchema } from '../schema.js';

export const schemaV1: BlogSchema = {
  version: 1,
  migration: new URL('./migration.sql', import.meta.url),
  marker: '_prisma_migrations',
  user: {
    table: 'User',
    id: 'id',
    email: 'email',
    name: 'name',
    createdAt: 'createdAt',
    updatedAt: 'updatedAt',
  },
  post: {
    table: 'Post',
    id: 'id',
    authorId: 'authorId',
    title: 'title',
    content: 'content',
    published: 'published',
    createdAt: 'createdAt',
    updatedAt: 'updatedAt',
  },
  tag: { table: 'Tag', id: 'id', name: 'name' },
  postTag: { table: 'PostTag', postId: 'postId', tagId: 'tagId', assignedAt: 'assignedAt' },
};
