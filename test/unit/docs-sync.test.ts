import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";

import {
  configurationDocPath,
  errorsDocPath,
  regenerateCommand,
  renderConfigurationDoc,
  renderErrorsDoc,
} from "../../scripts/gen-docs.js";
import { buildProgram } from "../../src/cli/program.js";

const cliDocPath = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "docs", "cli.md");

async function assertInSync(path: string, render: () => Promise<string>): Promise<void> {
  const committed = await readFile(path, "utf8");
  const rendered = await render();
  assert.ok(committed === rendered, `${path} is out of date: run ${regenerateCommand}`);
}

test("configuration.md matches the schema", async () => {
  await assertInSync(configurationDocPath, renderConfigurationDoc);
});

test("errors.md matches the code registry", async () => {
  await assertInSync(errorsDocPath, renderErrorsDoc);
});

interface CommandEntry {
  path: string;
  longOptions: string[];
  hasSubcommands: boolean;
}

/** Lists every command below `command` with its full path, such as `writ agent add`. */
function listCommands(command: Command, parentPath: string): CommandEntry[] {
  const entries: CommandEntry[] = [];
  for (const child of command.commands) {
    const path = `${parentPath} ${child.name()}`;
    entries.push(
      { path, longOptions: longOptionsOf(child), hasSubcommands: child.commands.length > 0 },
      ...listCommands(child, path),
    );
  }
  return entries;
}

function longOptionsOf(command: Command): string[] {
  return command.options.flatMap((option) => (option.long === undefined ? [] : [option.long]));
}

interface Section {
  heading: string;
  body: string;
}

/**
 * Splits markdown into sections at each heading. A section runs to the next heading of the same or a
 * higher level, so it includes its subsections. Headings are compared without backticks.
 */
function sectionsOf(markdown: string): Section[] {
  const lines = markdown.split("\n");
  const sections: Section[] = [];
  lines.forEach((line, index) => {
    const heading = /^(#{1,6}) (.*)$/.exec(line);
    if (heading === null) return;
    const level = (heading[1] as string).length;
    let end = index + 1;
    while (end < lines.length) {
      const next = /^(#{1,6}) /.exec(lines[end] as string);
      if (next !== null && (next[1] as string).length <= level) break;
      end += 1;
    }
    sections.push({
      heading: (heading[2] as string).replaceAll("`", "").trim(),
      body: lines.slice(index + 1, end).join("\n"),
    });
  });
  return sections;
}

/** Matches an option as a whole word, so that `--key-out` does not count as `--key`. */
function optionPattern(option: string): RegExp {
  return new RegExp(`${option.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![A-Za-z0-9-])`);
}

test("cli.md documents every command", async () => {
  const doc = await readFile(cliDocPath, "utf8");
  const headings = new Set(sectionsOf(doc).map((section) => section.heading));
  const program = buildProgram();
  const commands = listCommands(program, program.name());

  assert.ok(commands.length > 0, "the program has no commands");
  for (const { path, hasSubcommands } of commands) {
    if (hasSubcommands) {
      assert.ok(doc.includes(path), `docs/cli.md does not mention the command group "${path}"`);
    } else {
      assert.ok(headings.has(path), `docs/cli.md has no section headed "${path}"`);
    }
  }
});

test("cli.md documents every option", async () => {
  const doc = await readFile(cliDocPath, "utf8");
  const sections = sectionsOf(doc);
  const program = buildProgram();

  for (const option of longOptionsOf(program)) {
    assert.match(doc, optionPattern(option), `docs/cli.md does not mention the global option ${option}`);
  }
  for (const { path, longOptions } of listCommands(program, program.name())) {
    if (longOptions.length === 0) continue;
    const section = sections.find((candidate) => candidate.heading === path);
    assert.ok(section !== undefined, `docs/cli.md has no section headed "${path}"`);
    for (const option of longOptions) {
      assert.match(
        section.body,
        optionPattern(option),
        `the "${path}" section of docs/cli.md does not mention ${option}`,
      );
    }
  }
});
