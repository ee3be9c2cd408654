/**
 * What the install scenario reads out of the documents users follow, so that it runs their
 * commands as printed rather than a copy that could drift: the chart's notes (`helm install`
 * output) and the README's install command. Pure: starts nothing.
 */

/** The notes of `helm install` or `helm status` output: everything after the `NOTES:` line. */
export function notesOf(helmOutput: string): string {
  const at = helmOutput.indexOf('\nNOTES:\n');
  if (at < 0) throw new Error(`no NOTES in the helm output:\n${helmOutput}`);
  return helmOutput.slice(at + '\nNOTES:\n'.length);
}

/**
 * The blocks the notes print for copying: runs of lines indented by exactly two spaces, each
 * with the lines that continue it after a trailing backslash, the indentation removed.
 */
export function noteBlocks(notes: string): string[] {
  const blocks: string[][] = [];
  let current: string[] | undefined;
  for (const line of notes.split('\n')) {
    if (current !== undefined && (current.at(-1) ?? '').endsWith('\\')) {
      current.push(line.slice(2));
      continue;
    }
    if (/^ {2}\S/.test(line)) {
      if (current === undefined) {
        current = [];
        blocks.push(current);
      }
      current.push(line.slice(2));
    } else {
      current = undefined;
    }
  }
  return blocks.map((b) => b.join('\n'));
}

/** The one block of the notes that contains `marker`; fails unless there is exactly one. */
export function noteBlock(notes: string, marker: string): string {
  const found = noteBlocks(notes).filter((b) => b.includes(marker));
  if (found.length !== 1) {
    throw new Error(
      `the notes have ${found.length} blocks with ${JSON.stringify(marker)}:\n${notes}`,
    );
  }
  return found[0] as string;
}

/** The kube-apiserver flags the notes print: a block of `--audit-...=value` lines. */
export function apiserverFlags(notes: string): string[] {
  const block = noteBlocks(notes).find((b) =>
    b.split('\n').every((line) => /^--audit-[a-z-]+=\S+$/.test(line.trim())),
  );
  if (block === undefined) throw new Error(`the notes print no kube-apiserver flags:\n${notes}`);
  return block.split('\n').map((line) => line.trim());
}

/**
 * The `sh` code block of a Markdown section (`## <heading>`) that contains `marker`, its
 * indentation (in a list item) removed: the command a README shows there, continuation lines
 * included. Fails unless exactly one block has it.
 */
export function shellBlock(markdown: string, heading: string, marker: string): string {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`no section "## ${heading}"`);
  const end = markdown.indexOf('\n## ', start + 1);
  const section = markdown.slice(start, end < 0 ? undefined : end);
  const blocks = [...section.matchAll(/^( *)```sh\n([\s\S]*?)^\1```$/gm)]
    .map((m) => {
      const indent = (m[1] as string).length;
      return (m[2] as string)
        .split('\n')
        .map((line) => line.slice(Math.min(indent, line.length - line.trimStart().length)))
        .join('\n')
        .trim();
    })
    .filter((b) => b.includes(marker));
  if (blocks.length !== 1) {
    throw new Error(`section "## ${heading}" has ${blocks.length} sh blocks with ${marker}`);
  }
  return blocks[0] as string;
}
