import { test } from "node:test";
import assert from "node:assert/strict";
import { commandWords } from "../../src/cli/command-words.js";

test("blanks separate words", () => {
  assert.deepEqual(commandWords("  npx  server-filesystem\t/srv/data "), [
    "npx",
    "server-filesystem",
    "/srv/data",
  ]);
});

test("quotes keep blanks inside a word", () => {
  assert.deepEqual(commandWords(`node server.js '/srv/my data' "/srv/other data"`), [
    "node",
    "server.js",
    "/srv/my data",
    "/srv/other data",
  ]);
});

test("quoted parts join the word around them", () => {
  assert.deepEqual(commandWords(`--root='/a b'/c`), ["--root=/a b/c"]);
});

test("single quotes keep backslashes and dollars literally", () => {
  assert.deepEqual(commandWords(`echo '$HOME \\n'`), ["echo", "$HOME \\n"]);
});

test("double quotes unescape only quote and backslash", () => {
  assert.deepEqual(commandWords(`echo "say \\"hi\\" \\\\ \\n $HOME"`), ["echo", 'say "hi" \\ \\n $HOME']);
});

test("backslash outside quotes keeps the next character", () => {
  assert.deepEqual(commandWords("ls /srv/my\\ data"), ["ls", "/srv/my data"]);
});

test("empty quotes make an empty word", () => {
  assert.deepEqual(commandWords(`cmd "" ''`), ["cmd", "", ""]);
});

test("operators are ordinary characters", () => {
  assert.deepEqual(commandWords("cmd ; rm -rf / | cat"), ["cmd", ";", "rm", "-rf", "/", "|", "cat"]);
});

test("unterminated quote is refused", () => {
  assert.throws(() => commandWords(`node "server.js`), /unterminated " quote/);
  assert.throws(() => commandWords(`node 'server.js`), /unterminated ' quote/);
});

test("trailing backslash is refused", () => {
  assert.throws(() => commandWords("node server.js \\"), /lone backslash/);
});
