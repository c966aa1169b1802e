/**
 * pgoutput decoding through pg-logical-replication, with one change: column values stay in
 * PostgreSQL's text form. The library would run node-postgres's type parsers (int8 and numeric as
 * strings but timestamptz as a JS Date, losing microseconds); text round-trips every type losslessly.
 */
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
// The parser class is not re-exported by the package's entry point.
import { PgoutputParser } from 'pg-logical-replication/dist/output-plugins/pgoutput/pgoutput-parser.js';

const keepText = (text: string) => text;

export class TextPgoutputPlugin extends PgoutputPlugin {
  private readonly textParser = new PgoutputParser();

  constructor(options: Pgoutput.Options) {
    super(options);
    // readRelationColumn is private in the library's types; it is the one place the parser is chosen.
    const parser = this.textParser as unknown as { readRelationColumn: (reader: unknown) => object };
    const readColumn = parser.readRelationColumn.bind(this.textParser);
    parser.readRelationColumn = (reader) => ({ ...readColumn(reader), parser: keepText });
  }

  override parse(buffer: Buffer): Pgoutput.Message {
    return this.textParser.parse(buffer);
  }
}
