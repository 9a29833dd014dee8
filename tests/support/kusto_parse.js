// Checks Kusto queries and control commands with Microsoft's own parser (Kusto.Language).
// Reads a JSON array of strings on stdin; writes a JSON array of {text, kind, errors[]}.
"use strict";
const fs = require("fs");
const path = require("path");
const vm = require("vm");

const dir = path.dirname(require.resolve("@kusto/language-service-next/package.json", {
  paths: [path.join(__dirname, "..", "..")],
}));
vm.runInThisContext(fs.readFileSync(path.join(dir, "bridge.min.js"), "utf8"));
vm.runInThisContext(fs.readFileSync(path.join(dir, "Kusto.Language.Bridge.min.js"), "utf8"));
const K = Kusto.Language;
const kinds = {};
for (const [name, value] of Object.entries(K.Syntax.SyntaxKind)) {
  if (typeof value === "number") kinds[value] = name;
}

function check(text) {
  const code = K.KustoCode.Parse(text);
  const errors = Bridge.toArray(code.GetDiagnostics())
    .filter((d) => d.Severity === "Error" || d.Severity === undefined)
    .map((d) => ({ code: d.Code, message: d.Message, start: d.Start }));
  // An unrecognised command parses "clean" as UnknownCommand/PartialCommand: that is a failure.
  code.Syntax.WalkElements((element) => {
    const kind = kinds[element.Kind];
    if (kind === "UnknownCommand" || kind === "PartialCommand") {
      errors.push({ code: kind, message: `not a known Kusto command (${kind})`, start: element.TextStart });
    }
  });
  return { text, kind: String(code.Kind), errors };
}

const input = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(input.map(check)));
