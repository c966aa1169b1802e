// The new app's settings: {{new.database}} and each of its parts (host, port, user, password, name…),
// and old's, for apps that take DB_HOST, DB_PORT, DB_USERNAME… instead of one URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validatePlan } from '../src/plan/index.js';
import { ImagoError } from '../src/errors.js';
import { databasePasswords, fillPlaceholders } from '../src/plan/placeholders.js';

const databases = {
  old: 'postgresql://shop_app:s3cret@db.internal:6543/shop',
  // A password with characters a URL percent-encodes, an IPv6 host, no port.
  new: 'postgresql://imago%40admin:p%40ss%2Fw%3Ard@[::1]/shop%20v2',
};

test('every part of both databases, decoded', () => {
  const fill = (value: string) => fillPlaceholders(value, databases);
  assert.equal(fill('{{new.database}}'), databases.new);
  assert.equal(fill('{{new.database.url}}'), databases.new);
  assert.equal(fill('{{new.database.host}}'), '::1');
  assert.equal(fill('{{new.database.port}}'), '5432');
  assert.equal(fill('{{new.database.user}}'), 'imago@admin');
  assert.equal(fill('{{new.database.username}}'), 'imago@admin');
  assert.equal(fill('{{new.database.password}}'), 'p@ss/w:rd');
  assert.equal(fill('{{new.database.name}}'), 'shop v2');
  assert.equal(fill('{{new.database.database}}'), 'shop v2');
  assert.equal(fill('{{old.database}}'), databases.old);
  assert.equal(
    fill('{{old.database.host}}:{{ old.database.port }}/{{old.database.name}} as {{old.database.user}}'),
    'db.internal:6543/shop as shop_app',
  );
  assert.equal(fill('{{old.database.password}}'), 's3cret');
  // No database in the URL: PostgreSQL connects to the user's.
  assert.equal(fillPlaceholders('{{new.database.name}}', { ...databases, new: 'postgres://ann@h/' }), 'ann');
  assert.deepEqual(databasePasswords(databases), ['s3cret', 'p@ss/w:rd']);
});

test('an unknown placeholder is refused at validation, naming the variable and listing the known ones', () => {
  const plan = (env: Record<string, string>, command = ['node', 'server.js']) =>
    validatePlan(
      {
        name: 'shop_v2',
        old: { database: databases.old, app: { url: 'http://127.0.0.1:4000' } },
        new: { database: 'embedded', app: { command, env } },
        conversion: './conversion.ts',
        ingress: { nodes: [{ name: 'a', control: 'http://127.0.0.1:9000', token: '0123456789abcdef' }] },
      },
      '/plans/upgrade.ts',
    );
  const valid = plan({ DB_HOST: '{{new.database.host}}', DB_PASSWORD: '{{new.database.password}}' });
  assert.ok('command' in valid.new.app);
  assert.deepEqual(valid.new.app.env, {
    DB_HOST: '{{new.database.host}}',
    DB_PASSWORD: '{{new.database.password}}',
  });
  let message = '';
  try {
    plan({ DB_HOST: '{{new.database.hostname}}', OLD: '{{old.db}}', DB_PORT: '{{new.database.port}}' });
  } catch (err) {
    assert.ok(err instanceof ImagoError, String(err));
    message = err.message;
  }
  assert.match(
    message,
    /new\.app\.env\.DB_HOST: unknown placeholder \{\{new\.database\.hostname\}\}; known: \{\{new\.database\}\}, \{\{new\.database\.url\}\}, \{\{new\.database\.host\}\}, \{\{new\.database\.port\}\}, \{\{new\.database\.user\}\}, \{\{new\.database\.username\}\}, \{\{new\.database\.password\}\}, \{\{new\.database\.name\}\}, \{\{new\.database\.database\}\} \(and the same with old\)/,
  );
  assert.match(
    message,
    /new\.app\.env\.OLD: unknown placeholder \{\{old\.db\}\}; known: \{\{old\.database\}\},/,
  );
  assert.doesNotMatch(message, /DB_PORT/);
  // Arguments are visible to every user of the machine: no placeholder (no password) there.
  assert.throws(
    () => plan({}, ['node', 'server.js', '--password={{new.database.password}}']),
    /new\.app\.command\.2: placeholders are filled in env values only/,
  );
});
