import { readFileSync } from "node:fs";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { ocsfVersion } from "../../src/audit/export/ocsf.js";

// ajv-formats is CommonJS whose typings declare an ES default export. At run time under NodeNext the
// default import is the module object, and its `default` member is the plugin.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv2020,
) => Ajv2020;

/** The schema file of each exported OCSF class, keyed by `class_uid`. */
const schemaFiles: Record<number, string> = {
  3002: "authentication.schema.json",
  6003: "api_activity.schema.json",
  3004: "entity_management.schema.json",
  0: "base_event.schema.json",
};

/**
 * Compiles the OCSF JSON Schemas shipped under te../data/ocsf/<version>/ for the version the exporter
 * declares, and returns one validator per `class_uid`.
 */
export function ocsfValidators(): Map<number, ValidateFunction> {
  const validators = new Map<number, ValidateFunction>();
  for (const [classUid, file] of Object.entries(schemaFiles)) {
    const url = new URL(`../data/ocsf/${ocsfVersion}/${file}`, import.meta.url);
    // strictRequired is off because `anyOf` branches name required members without redeclaring them,
    // which is valid JSON Schema; every other strict check stays on.
    const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
    addFormats(ajv);
    validators.set(Number(classUid), ajv.compile(JSON.parse(readFileSync(url, "utf8")) as object));
  }
  return validators;
}
