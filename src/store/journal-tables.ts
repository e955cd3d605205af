import type { SQLInputValue, StatementSync } from 'node:sqlite';
import { journalStatement, type Journal } from './journal.js';

/**
 * What a store keeping tables in the journal (upload queue, multipart uploads, retention) runs its SQL
 * through: statements compiled once on the journal's connection, and its transactions.
 */
export abstract class JournalTables {
  protected readonly journal: Journal;

  constructor(journal: Journal) {
    this.journal = journal;
  }

  protected statement(sql: string): StatementSync {
    return journalStatement(this.journal, sql);
  }

  protected selectOne<T>(sql: string, ...params: SQLInputValue[]): T | undefined {
    return this.statement(sql).get(...params) as T | undefined;
  }

  protected selectAll<T>(sql: string, ...params: SQLInputValue[]): T[] {
    return this.statement(sql).all(...params) as T[];
  }

  protected exec(sql: string, ...params: SQLInputValue[]): { changes: number; lastInsertRowid: number } {
    const r = this.statement(sql).run(...params);
    return { changes: Number(r.changes), lastInsertRowid: Number(r.lastInsertRowid) };
  }
}
