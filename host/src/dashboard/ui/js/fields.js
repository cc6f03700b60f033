// Field types: their labels, glyphs, options (for the collection editor) and how a value is
// shown in a table cell. The option names are PocketBase's JSON keys.

import { h } from './dom.js';

// [key, kind, label, hint]; kinds: int, num (nullable), text, bool, list (comma separated),
// collection (a relation target).
const domainOpts = [
  ['exceptDomains', 'list', 'Except domains', 'Comma separated; these are refused.'],
  ['onlyDomains', 'list', 'Only domains', 'Comma separated; only these are allowed.'],
];

export const TYPES = {
  text: {
    label: 'Plain text', glyph: 'T',
    options: [
      ['min', 'int', 'Min length'], ['max', 'int', 'Max length'],
      ['pattern', 'text', 'Validation pattern', 'A regular expression, e.g. ^[a-z0-9]+$'],
      ['autogeneratePattern', 'text', 'Autogenerate pattern', 'e.g. [a-z0-9]{30}; fills empty values'],
    ],
  },
  editor: {
    label: 'Rich editor', glyph: '¶',
    options: [['maxSize', 'int', 'Max size (bytes)'], ['convertURLs', 'bool', 'Convert URLs to relative']],
  },
  number: {
    label: 'Number', glyph: '#',
    options: [['min', 'num', 'Min'], ['max', 'num', 'Max'], ['onlyInt', 'bool', 'No decimals']],
  },
  bool: { label: 'Bool', glyph: '◐', options: [] },
  email: { label: 'Email', glyph: '@', options: domainOpts },
  url: { label: 'URL', glyph: '⇗', options: domainOpts },
  date: {
    label: 'Datetime', glyph: '▦',
    options: [
      ['min', 'text', 'Min date', 'UTC, e.g. 2024-01-01 00:00:00.000Z'],
      ['max', 'text', 'Max date', 'UTC, e.g. 2030-12-31 23:59:59.999Z'],
    ],
  },
  autodate: {
    label: 'Autodate', glyph: '⟳',
    options: [['onCreate', 'bool', 'Set on create'], ['onUpdate', 'bool', 'Set on update']],
  },
  select: {
    label: 'Select', glyph: '☰',
    options: [
      ['values', 'list', 'Choices', 'Comma separated, e.g. draft, published'],
      ['maxSelect', 'int', 'Max select', '1 = single choice; more = multiple'],
    ],
  },
  json: { label: 'JSON', glyph: '{}', options: [['maxSize', 'int', 'Max size (bytes)']] },
  relation: {
    label: 'Relation', glyph: '⇄',
    options: [
      ['collectionId', 'collection', 'Collection'],
      ['minSelect', 'int', 'Min select'],
      ['maxSelect', 'int', 'Max select', '1 = single; more = multiple'],
      ['cascadeDelete', 'bool', 'Delete this record when the related one is deleted'],
    ],
  },
  password: {
    label: 'Password', glyph: '***', authOnly: true,
    options: [['min', 'int', 'Min length'], ['max', 'int', 'Max length'], ['pattern', 'text', 'Validation pattern'], ['cost', 'int', 'Bcrypt cost']],
  },
};

/** Types offered by "New field" (password only in auth collections, which already have one). */
export function creatableTypes() {
  return Object.entries(TYPES).filter(([, t]) => !t.authOnly).map(([k]) => k);
}

export function glyph(type) {
  return h('span', { class: 'type-icon', text: TYPES[type]?.glyph ?? '?', attrs: { title: TYPES[type]?.label ?? type } });
}

/** A fresh field of `type` with PocketBase's defaults. */
export function newField(type, name) {
  const f = { name, type, required: false, hidden: false, presentable: false, system: false };
  if (type === 'select') Object.assign(f, { values: [], maxSelect: 1 });
  if (type === 'relation') Object.assign(f, { collectionId: '', maxSelect: 1, minSelect: 0, cascadeDelete: false });
  if (type === 'autodate') Object.assign(f, { onCreate: true, onUpdate: false });
  if (type === 'editor') Object.assign(f, { convertURLs: false });
  if (type === 'number') Object.assign(f, { onlyInt: false });
  return f;
}

export function isMultiple(field) {
  return (field.type === 'select' || field.type === 'relation' || field.type === 'file') && (field.maxSelect || 1) > 1;
}

/** Fields that make sense to search with `~` when the search box holds plain text. */
export function searchableFields(collection) {
  return collection.fields.filter((f) => !f.hidden && ['text', 'editor', 'email', 'url', 'select'].includes(f.type));
}

/**
 * PocketBase's search box: a value with filter operators is used as a filter; plain text
 * searches every text-like field (and the id) with `~`.
 */
export function searchToFilter(collection, input) {
  const text = input.trim();
  if (!text) return '';
  if (/[=~<>!]/.test(text) || /&&|\|\|/.test(text)) return text;
  const q = `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  const names = ['id', ...searchableFields(collection).map((f) => f.name).filter((n) => n !== 'id')];
  return names.map((n) => `${n} ~ ${q}`).join(' || ');
}

/** The text a related record is shown by: its presentable fields, else a likely name, else id. */
export function summary(collection, record) {
  if (!record) return '';
  const fields = collection?.fields ?? [];
  const pres = fields.filter((f) => f.presentable && record[f.name] !== undefined && record[f.name] !== '');
  if (pres.length) return pres.map((f) => String(Array.isArray(record[f.name]) ? record[f.name].join(', ') : record[f.name])).join(' · ');
  for (const n of ['title', 'name', 'email', 'username', 'label', 'slug']) {
    if (typeof record[n] === 'string' && record[n]) return record[n];
  }
  return record.id;
}

/** A table cell's content for `value` of `field`. */
export function cell(field, value, record, collectionsById) {
  if (value === undefined || value === null || value === '' || (Array.isArray(value) && !value.length)) {
    if (field.type === 'bool') return h('span', { class: 'badge', text: 'False' });
    return h('span', { class: 'muted', text: 'N/A' });
  }
  switch (field.type) {
    case 'bool':
      return h('span', { class: ['badge', value && 'success'], text: value ? 'True' : 'False' });
    case 'select':
      return (Array.isArray(value) ? value : [value]).map((v) => h('span', { class: 'chip', text: v }));
    case 'relation': {
      const ids = Array.isArray(value) ? value : [value];
      const expanded = record.expand?.[field.name];
      const list = Array.isArray(expanded) ? expanded : expanded ? [expanded] : [];
      const target = collectionsById[field.collectionId];
      return ids.map((id) => {
        const rec = list.find((r) => r.id === id);
        return h('span', { class: 'chip', text: rec ? summary(target, rec) : id, attrs: { title: id } });
      });
    }
    case 'json':
      return h('span', { class: 'mono', text: JSON.stringify(value).slice(0, 120) });
    case 'editor':
      return h('span', { text: String(value).replace(/<[^>]*>/g, ' ').slice(0, 160) });
    case 'date':
    case 'autodate':
      return h('span', { class: 'nowrap small', text: value });
    case 'text':
      if (field.primaryKey) return h('span', { class: 'mono', text: value });
      return h('span', { text: String(value).slice(0, 200) });
    default:
      return h('span', { text: String(value).slice(0, 200) });
  }
}
