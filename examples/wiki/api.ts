/**
 * The wiki's HTTP API, identical in v1 and v2 so that their answers can be compared request by
 * request: request validation and response shapes live here, storage lives in each version's store.
 */
import { z } from 'zod';
import { HttpError, type Reply, type Route } from './http.js';

/** Every wiki page lives in namespace 0 (the main namespace) in this demo. */
export const NAMESPACE = 0;
export const HISTORY_LIMIT = 50;
export const RECENT_DEFAULT = 20;
export const RECENT_MAX = 100;
const TITLE_MAX = 255;

export interface PageView {
  title: string;
  text: string;
  timestamp: string;
  user: string;
  comment: string;
  /** UTF-8 byte length of the text; only v2 stores it (an intended difference). */
  length?: number;
}

export interface RevisionView {
  timestamp: string;
  user: string;
  comment: string;
}

export interface ChangeView extends RevisionView {
  title: string;
}

export interface EditInput {
  text: string;
  user: string;
  comment: string;
}

/** What a wiki version must store and answer; timestamps are already formatted (see sql.ts). */
export interface WikiStore {
  page(title: string): Promise<PageView | undefined>;
  /** Newest first, at most `limit`; undefined when the page does not exist. */
  history(title: string, limit: number): Promise<RevisionView[] | undefined>;
  /** The new page's timestamp, or undefined when the title is taken. */
  create(title: string, edit: EditInput): Promise<string | undefined>;
  /** The new revision's timestamp, or undefined when the page does not exist. */
  edit(title: string, edit: EditInput): Promise<string | undefined>;
  recent(limit: number): Promise<ChangeView[]>;
}

// PostgreSQL text cannot hold NUL, so it is refused here as a client error rather than failing in SQL.
const noNul = (s: string) => !s.includes('\0');
const editBody = z.object({
  text: z.string().refine(noNul, 'text must not contain NUL'),
  user: z.string().refine(noNul).default(''),
  comment: z.string().refine(noNul).default(''),
});

function title(params: Record<string, string>): string {
  const t = params.title ?? '';
  const chars = [...t].length;
  if (chars < 1 || chars > TITLE_MAX) throw new HttpError(400, `title must be 1..${TITLE_MAX} characters`);
  if (!noNul(t)) throw new HttpError(400, 'title must not contain NUL');
  return t;
}

async function editInput(json: () => Promise<unknown>): Promise<EditInput> {
  const parsed = editBody.safeParse(await json());
  if (!parsed.success) {
    throw new HttpError(
      400,
      `body must be { text, user?, comment? } of strings: ${parsed.error.issues[0]?.message}`,
    );
  }
  return parsed.data;
}

function recentLimit(query: URLSearchParams): number {
  const raw = query.get('limit');
  if (raw === null) return RECENT_DEFAULT;
  if (!/^[0-9]{1,9}$/.test(raw) || Number(raw) < 1)
    throw new HttpError(400, 'limit must be a positive integer');
  return Math.min(Number(raw), RECENT_MAX);
}

const ok = (body: unknown, status = 200): Reply => ({ status, body });
const missing = (t: string): Reply => ({ status: 404, body: { error: `page "${t}" does not exist` } });

export function wikiRoutes(store: WikiStore, version: number): Route[] {
  return [
    { method: 'GET', path: '/healthz', handle: async () => ok({ ok: true, version }) },
    {
      method: 'GET',
      path: '/wiki/:title',
      handle: async ({ params }) => {
        const t = title(params);
        const page = await store.page(t);
        return page ? ok(page) : missing(t);
      },
    },
    {
      method: 'PUT',
      path: '/wiki/:title',
      handle: async ({ params, json }) => {
        const t = title(params);
        const timestamp = await store.create(t, await editInput(json));
        return timestamp
          ? ok({ title: t, timestamp }, 201)
          : { status: 409, body: { error: `page "${t}" already exists` } };
      },
    },
    {
      method: 'POST',
      path: '/wiki/:title',
      handle: async ({ params, json }) => {
        const t = title(params);
        const timestamp = await store.edit(t, await editInput(json));
        return timestamp ? ok({ title: t, timestamp }) : missing(t);
      },
    },
    {
      method: 'GET',
      path: '/wiki/:title/history',
      handle: async ({ params }) => {
        const t = title(params);
        const revisions = await store.history(t, HISTORY_LIMIT);
        return revisions ? ok({ title: t, revisions }) : missing(t);
      },
    },
    {
      method: 'GET',
      path: '/recent',
      handle: async ({ query }) => ok({ changes: await store.recent(recentLimit(query)) }),
    },
  ];
}
