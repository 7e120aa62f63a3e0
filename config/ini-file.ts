/**
 * Reading one configuration file. `ini` does the decoding (quotes, inline comments, escapes); a
 * line scan before it rejects what `ini` would silently accept or merge — keys before any section,
 * `key[]` arrays, nested `[a.b]` sections, duplicates, lines without `=` — and records line numbers
 * so errors can point at them. Only plain `[SECTION]` headers and `key = value` lines get through.
 */
import { readFileSync } from 'node:fs';
import ini from 'ini';
import { TempestError } from '../engine/util/errors.js';

export interface FileEntry {
  section: string;
  key: string;
  /** The value as text, after `ini` removed quotes and inline comments. */
  value: string;
  line: number;
}

export interface FileSection {
  name: string;
  line: number;
  /** Number of keys under this header. */
  keys: number;
}

export interface IniFile {
  sections: FileSection[];
  entries: FileEntry[];
}

// The same header pattern `ini` uses, so both agree on what a header is.
const HEADER_RE = /^\[([^\]]*)\]\s*$/;
const COMMENT_OR_BLANK_RE = /^\s*([;#]|$)/;
const SECTION_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function readIniFile(file: string): IniFile {
  const text = readText(file).replace(/^\uFEFF/, '');
  const scanned = scan(file, text);
  const decoded = ini.parse(text);
  const entries = scanned.entries.map((e) => ({ ...e, value: decodedValue(file, decoded, e) }));
  return { sections: scanned.sections, entries };
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : String(err);
    throw new TempestError('ERR_CONFIG_FILE', `${file}: cannot read configuration file: ${why}`, { cause: err });
  }
}

function syntax(file: string, line: number, message: string): TempestError {
  return new TempestError('ERR_CONFIG_SYNTAX', `${file}: line ${line}: ${message}`);
}

function scan(file: string, text: string): { sections: FileSection[]; entries: Omit<FileEntry, 'value'>[] } {
  const sections: FileSection[] = [];
  const entries: Omit<FileEntry, 'value'>[] = [];
  const keyLines = new Map<string, number>(); // "SECTION/key" -> line of first occurrence
  let current: FileSection | undefined;

  // Split like `ini` does but keep empty lines so line numbers stay true.
  text.split(/\r\n|\r|\n/).forEach((line, index) => {
    const lineNo = index + 1;
    if (COMMENT_OR_BLANK_RE.test(line)) return;

    const header = HEADER_RE.exec(line);
    if (header) {
      const name = header[1] ?? '';
      if (name.includes('.')) throw syntax(file, lineNo, `[${name}]: nested sections are not supported`);
      if (!SECTION_NAME_RE.test(name)) throw syntax(file, lineNo, `expected a [SECTION] header, got ${JSON.stringify(line)}`);
      const first = sections.find((s) => s.name === name);
      if (first) throw syntax(file, lineNo, `[${name}]: duplicate section (first at line ${first.line})`);
      current = { name, line: lineNo, keys: 0 };
      sections.push(current);
      return;
    }
    if (line.trimStart().startsWith('[')) {
      throw syntax(file, lineNo, `expected a [SECTION] header alone on its line, got ${JSON.stringify(line.trim())}`);
    }

    const eq = line.indexOf('=');
    const key = (eq === -1 ? line : line.slice(0, eq)).trim();
    const where = current ? `[${current.name}] ${key}` : key;
    if (eq === -1) throw syntax(file, lineNo, `${where}: expected "key = value", got ${JSON.stringify(line.trim())}`);
    if (key === '') throw syntax(file, lineNo, `expected "key = value", got ${JSON.stringify(line.trim())}`);
    if (!current) throw syntax(file, lineNo, `${key}: key outside any section; put it under a [SECTION] header`);
    if (key.endsWith('[]')) throw syntax(file, lineNo, `${where}: array keys are not supported; write "${key.slice(0, -2)} = value"`);
    // Quotes, comment characters or escapes in a key would make `ini` store it under another name.
    if (ini.unsafe(key) !== key) throw syntax(file, lineNo, `${where}: malformed key`);

    const id = `${current.name}/${key}`;
    const firstLine = keyLines.get(id);
    if (firstLine !== undefined) {
      throw new TempestError('ERR_CONFIG_SYNTAX', `${file}: ${where}: duplicate key (lines ${firstLine} and ${lineNo})`);
    }
    keyLines.set(id, lineNo);
    current.keys += 1;
    entries.push({ section: current.name, key, line: lineNo });
  });
  return { sections, entries };
}

function decodedValue(file: string, decoded: Record<string, unknown>, e: Omit<FileEntry, 'value'>): string {
  const section = decoded[e.section] as Record<string, unknown> | undefined;
  const value = section?.[e.key];
  // `ini` turns the bare words true, false and null into JSON values; give the text back.
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return String(value);
  // Only names `ini` refuses to store (`__proto__`) get here, or a future `ini` that decodes differently.
  throw syntax(file, e.line, `[${e.section}] ${e.key}: could not be decoded`);
}
