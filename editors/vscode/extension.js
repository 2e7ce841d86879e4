// Starts `progc lsp` for .prog files: diagnostics, hover, go to definition, completion and
// formatting all come from the server.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("progc").get("path") || "progc";
  const run = { command, args: ["lsp"] };
  client = new LanguageClient(
    "progc",
    "progc language server",
    { run, debug: run },
    { documentSelector: [{ scheme: "file", language: "prog" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
