/**
 * The UploadStateStore contract (test/support/upload-state-suite.ts) run against every implementation:
 * the journal's tables (what the product uses) and memory.
 */
import { Journal } from '../src/store/journal.js';
import { JournalUploadStateStore } from '../src/upload/journal-state.js';
import { MemoryUploadStateStore } from '../src/upload/state.js';
import { describeUploadStateConformance } from './support/upload-state-suite.js';

describeUploadStateConformance('journal', {
  durable: true,
  async open(dir) {
    const journal = Journal.open(dir);
    return { store: new JournalUploadStateStore(journal), close: async () => journal.close() };
  },
});

describeUploadStateConformance('memory', {
  durable: { why: 'it keeps state in memory, for callers that accept losing resume information on exit' },
  async open() {
    return { store: new MemoryUploadStateStore(), close: async () => {} };
  },
});
