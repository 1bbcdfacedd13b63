import { WritError } from "../errors/writ-error.js";

/**
 * Splits a command line into its words the way a POSIX shell quotes them, and nothing more: words
 * are separated by unquoted blanks, single quotes keep everything literally, double quotes keep
 * everything but `\"` and `\\`, and a backslash outside quotes keeps the next character. No variable,
 * glob or operator is expanded, since the words become a process's argv, never a shell's input.
 * Throws `invalid_request` for an unterminated quote or a trailing backslash.
 */
export function commandWords(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let index = 0; index < line.length; index += 1) {
    const char = line[index] as string;
    if (quote === "'") {
      if (char === "'") quote = undefined;
      else word += char;
    } else if (quote === '"') {
      if (char === '"') quote = undefined;
      else if (char === "\\" && (line[index + 1] === '"' || line[index + 1] === "\\")) {
        index += 1;
        word += line[index];
      } else word += char;
    } else if (char === " " || char === "\t" || char === "\n") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      inWord = true;
      if (char === "'" || char === '"') quote = char;
      else if (char === "\\") {
        index += 1;
        if (index >= line.length)
          throw new WritError("invalid_request", "the command ends with a lone backslash");
        word += line[index];
      } else word += char;
    }
  }
  if (quote !== undefined)
    throw new WritError("invalid_request", `the command has an unterminated ${quote} quote`);
  if (inWord) words.push(word);
  return words;
}
