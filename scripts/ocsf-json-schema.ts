// Writes JSON Schema (draft 2020-12) files for the OCSF event classes that `writ audit export
// --format ocsf` emits, compiled from a clone of the OCSF schema repository at one version tag.
// Usage:
//   node --import tsx scripts/ocsf-json-schema.ts --repo DIR --tag 1.3.0 [--out test/data/ocsf/1.3.0]
// DIR is a clone, bare or not, of github.com/ocsf/ocsf-schema. Files are read with
// `git show TAG:PATH`, so the clone's checkout does not matter.
//
// The compilation applies the rules that the schema files follow. A class or object inherits the
// attributes of the one it `extends`. `$include` merges an include or profile file under the file's
// own attributes. Each attribute takes its type, enum and array flag from dictionary.json unless it
// overrides them. An attribute that a profile brings exists only when that profile is applied, and
// `"profile": null` makes it part of the class itself.

import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as prettier from "prettier";

/** The classes writ exports and the OCSF profiles each applies; the exporter lists the same profiles. */
const exportedClasses: { name: string; profiles: string[] }[] = [
  { name: "authentication", profiles: [] },
  { name: "api_activity", profiles: [] },
  // The host profile is what gives Entity Management its `actor` attribute in OCSF 1.3.0.
  { name: "entity_management", profiles: ["host"] },
  { name: "base_event", profiles: [] },
];

type Json = Record<string, unknown>;

interface Attribute {
  type?: string;
  is_array?: boolean;
  enum?: Record<string, unknown>;
  requirement?: string;
  caption?: string;
  profile?: string | null;
  "@deprecated"?: unknown;
  [key: string]: unknown;
}

interface Definition {
  name: string;
  caption?: string;
  uid?: number;
  category?: string;
  extends?: string;
  attributes: Record<string, Attribute>;
  constraints?: { at_least_one?: string[]; just_one?: string[] };
}

const { values: args } = parseArgs({
  options: { repo: { type: "string" }, tag: { type: "string" }, out: { type: "string" } },
});
if (args.repo === undefined || args.tag === undefined) {
  console.error("usage: scripts/ocsf-json-schema.ts --repo DIR --tag TAG [--out DIR]");
  process.exit(2);
}
const repo = args.repo;
const tag = args.tag;
const outDir = args.out ?? join("test", "data", "ocsf", tag.replace(/^v/, ""));

const git = (...gitArgs: string[]): string =>
  execFileSync("git", ["-C", repo, ...gitArgs], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
const parsedFiles = new Map<string, Json>();
function readJson(path: string): Json {
  let parsed = parsedFiles.get(path);
  if (parsed === undefined) {
    parsed = JSON.parse(git("show", `${tag}:${path}`)) as Json;
    parsedFiles.set(path, parsed);
  }
  return parsed;
}

const commit = git("rev-parse", `${tag}^{commit}`).trim();
const files = git("ls-tree", "-r", "--name-only", tag)
  .split("\n")
  .filter((path) => path.endsWith(".json") && !path.startsWith("extensions/"));
const dictionary = readJson("dictionary.json") as {
  attributes: Record<string, Attribute>;
  types: { attributes: Record<string, Json> };
};
const categories = (readJson("categories.json") as { attributes: Record<string, { uid: number }> })
  .attributes;

/** Finds the event or object file whose `name` is `name`. */
function fileNamed(folder: "events" | "objects", name: string): string {
  const direct = `objects/${name}.json`;
  if (folder === "objects" && files.includes(direct)) return direct;
  const found = files.find((path) => path.startsWith(`${folder}/`) && readJson(path).name === name);
  if (found === undefined) throw new Error(`no ${folder} file named "${name}" at ${tag}`);
  return found;
}

function isPlainObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Merges `over` onto `under`: nested objects (such as enums) merge, other values of `over` win. */
function deepMerge(under: Json, over: Json): Json {
  const merged: Json = { ...under };
  for (const [key, value] of Object.entries(over)) {
    const existing = merged[key];
    merged[key] = isPlainObject(existing) && isPlainObject(value) ? deepMerge(existing, value) : value;
  }
  return merged;
}

function mergeAttributes(
  under: Record<string, Attribute>,
  over: Record<string, Attribute>,
): Record<string, Attribute> {
  const merged = { ...under };
  for (const [name, attribute] of Object.entries(over)) {
    merged[name] = deepMerge(merged[name] ?? {}, attribute) as Attribute;
  }
  return merged;
}

/** Expands `$include`: included attributes first, the file's own on top; profile files tag theirs. */
function ownAttributes(file: Json): Record<string, Attribute> {
  const { $include: includes, ...own } = (file.attributes ?? {}) as Record<string, unknown>;
  let attributes: Record<string, Attribute> = {};
  for (const path of (includes as string[] | undefined) ?? []) {
    const included = readJson(path);
    const group = (included.annotations as Json | undefined)?.group;
    const isProfile = included.meta === "profile";
    const tagged: Record<string, Attribute> = {};
    for (const [name, attribute] of Object.entries(included.attributes as Record<string, Attribute>)) {
      tagged[name] = {
        ...(group === undefined ? {} : { group }),
        ...(isProfile ? { profile: included.name as string } : {}),
        ...attribute,
      };
    }
    attributes = mergeAttributes(attributes, tagged);
  }
  return mergeAttributes(attributes, own as Record<string, Attribute>);
}

/** Resolves a class or an object with everything it inherits. */
function resolve(folder: "events" | "objects", name: string): Definition {
  const file = readJson(fileNamed(folder, name));
  const parentName = file.extends as string | undefined;
  const parent =
    parentName === undefined || parentName === "object" ? undefined : resolve(folder, parentName);
  return {
    name,
    caption: file.caption as string,
    uid: (file.uid as number | undefined) ?? parent?.uid,
    category: (file.category as string | undefined) ?? parent?.category,
    attributes: mergeAttributes(parent?.attributes ?? {}, ownAttributes(file)),
    // A definition's own constraints replace the inherited ones.
    constraints: (file.constraints as Definition["constraints"]) ?? parent?.constraints,
  };
}

/** Walks a data type down to its base type, collecting the checks each level adds. */
function typeSchema(typeName: string): Json {
  const schema: Json = {};
  let current: string | undefined = typeName;
  while (current !== undefined) {
    const spec: Json | undefined = dictionary.types.attributes[current];
    if (spec === undefined) throw new Error(`unknown OCSF type "${current}"`);
    if (typeof spec.regex === "string" && schema.pattern === undefined)
      schema.pattern = usablePattern(spec.regex);
    if (typeof spec.max_len === "number" && schema.maxLength === undefined) schema.maxLength = spec.max_len;
    if (Array.isArray(spec.range) && schema.minimum === undefined) {
      schema.minimum = spec.range[0];
      schema.maximum = spec.range[1];
    }
    const base = spec.type as string | undefined;
    if (base === undefined) {
      const jsonType = baseJsonTypes[current];
      if (jsonType !== undefined) schema.type = jsonType;
    }
    current = base;
  }
  if (schema.pattern === undefined) delete schema.pattern;
  return schema;
}

const baseJsonTypes: Record<string, string | undefined> = {
  boolean_t: "boolean",
  float_t: "number",
  integer_t: "integer",
  long_t: "integer",
  string_t: "string",
  json_t: undefined,
};

/** Keeps an OCSF regex only when JavaScript compiles it in Unicode mode, as Ajv runs patterns. */
function usablePattern(regex: string): string | undefined {
  try {
    new RegExp(regex, "u");
    return regex;
  } catch {
    console.warn(`skipped a pattern JavaScript cannot compile: ${regex.slice(0, 60)}…`);
    return undefined;
  }
}

const reachableObjects = new Set<string>();

function attributeSchema(name: string, attribute: Attribute): Json {
  const fromDictionary = dictionary.attributes[name];
  if (fromDictionary === undefined) throw new Error(`attribute "${name}" is not in dictionary.json`);
  const merged = deepMerge(fromDictionary, attribute) as Attribute;
  const typeName = merged.type;
  if (typeName === undefined) throw new Error(`attribute "${name}" has no type`);

  let item: Json;
  if (typeName === "object") item = { type: "object" };
  else if (typeName.endsWith("_t")) item = typeSchema(typeName);
  else {
    reachableObjects.add(typeName);
    item = { $ref: `#/$defs/${typeName}` };
  }
  if (merged.enum !== undefined) {
    const numeric = item.type === "integer";
    item = { ...item, enum: Object.keys(merged.enum).map((key) => (numeric ? Number(key) : key)) };
  }

  const described: Json = { title: merged.caption };
  if (merged["@deprecated"] !== undefined) described.deprecated = true;
  return merged.is_array === true ? { ...described, type: "array", items: item } : { ...described, ...item };
}

/** Builds the object schema of a resolved definition, dropping attributes of profiles not applied. */
function definitionSchema(definition: Definition, profiles: string[]): Json {
  const properties: Json = {};
  const required: string[] = [];
  for (const [name, attribute] of Object.entries(definition.attributes).sort(([a], [b]) =>
    a.localeCompare(b),
  )) {
    if (typeof attribute.profile === "string" && !profiles.includes(attribute.profile)) continue;
    properties[name] = attributeSchema(name, attribute);
    if (attribute.requirement === "required") required.push(name);
  }
  const schema: Json = { type: "object", title: definition.caption, properties, required };
  const present = (names: string[] | undefined): string[] =>
    (names ?? []).filter((name) => name in properties);
  const atLeastOne = present(definition.constraints?.at_least_one);
  const justOne = present(definition.constraints?.just_one);
  if (atLeastOne.length > 0) schema.anyOf = atLeastOne.map((name) => ({ required: [name] }));
  if (justOne.length > 0) schema.oneOf = justOne.map((name) => ({ required: [name] }));
  schema.additionalProperties = false;
  return schema;
}

function classSchema(name: string, profiles: string[]): Json {
  reachableObjects.clear();
  const definition = resolve("events", name);
  const categoryUid = name === "base_event" ? 0 : (categories[definition.category ?? ""]?.uid ?? 0);
  const classUid = name === "base_event" ? 0 : categoryUid * 1000 + (definition.uid ?? 0);
  const schema = definitionSchema(definition, profiles);
  const properties = schema.properties as Record<string, Json>;

  // The category and class ids are fixed per class, and type_uid is class_uid * 100 + activity_id.
  properties.category_uid = { ...properties.category_uid, enum: [categoryUid] };
  properties.class_uid = { ...properties.class_uid, enum: [classUid] };
  const activities = (properties.activity_id?.enum as number[] | undefined) ?? [];
  properties.type_uid = { ...properties.type_uid, enum: activities.map((id) => classUid * 100 + id) };

  const definitions: Json = {};
  const done = new Set<string>();
  for (
    let pending = [...reachableObjects];
    pending.length > 0;
    pending = [...reachableObjects].filter((o) => !done.has(o))
  ) {
    for (const objectName of pending) {
      done.add(objectName);
      definitions[objectName] = definitionSchema(resolve("objects", objectName), profiles);
    }
  }

  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $comment:
      `OCSF ${tag} class "${name}" (class_uid ${classUid}) with profiles [${profiles.join(", ")}], ` +
      `compiled by scripts/ocsf-json-schema.ts from github.com/ocsf/ocsf-schema at commit ${commit}.`,
    ...schema,
    $defs: Object.fromEntries(Object.entries(definitions).sort(([a], [b]) => a.localeCompare(b))),
  };
}

mkdirSync(outDir, { recursive: true });
for (const { name, profiles } of exportedClasses) {
  const path = join(outDir, `${name}.schema.json`);
  // Formatted as the repository's Prettier configuration formats JSON, so `npm run lint` accepts it.
  const options = (await prettier.resolveConfig(path)) ?? {};
  writeFileSync(
    path,
    await prettier.format(JSON.stringify(classSchema(name, profiles)), { ...options, filepath: path }),
  );
  console.log(`wrote ${path}`);
}
console.log(`OCSF ${tag} at commit ${commit}`);
