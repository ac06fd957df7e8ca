/**
 * The media files on disk under `media_store_path`, laid out exactly as Synapse lays out its media store (so one can
 * be imported as it is):
 *
 *   local_content/ab/cd/efgh…                                  the upload of media id "abcdefgh…"
 *   local_thumbnails/ab/cd/efgh…/{w}-{h}-{top}-{sub}-{method}  its thumbnails (type "top/sub")
 *   remote_content/{server}/ab/cd/efgh…                        another server's media, by our filesystem id
 *   remote_thumbnail/{server}/ab/cd/efgh…/{w}-{h}-{top}-{sub}-{method}
 *
 * Paths are only ever built from ids Myelin generated (media and filesystem ids) and from server names and content
 * types checked here, never from raw request input. Every write goes to a temp file in `tmp/`, is fsynced, then
 * renamed into place (and the directory fsynced): a file is either whole or absent, and a 200 means it is on disk.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, type ReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { PassThrough, Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { MatrixError, tooLarge } from "../../errors.js";

/** The ids Myelin generates for media and remote files: Synapse's `random_string(24)` alphabet. */
const GENERATED_ID = /^[A-Za-z0-9]{5,255}$/;
/** A server name as a directory: host name, IPv4 or bracketed IPv6 literal, optional port; never `.` or `..`. */
const SERVER_DIR = /^(?!\.)[A-Za-z0-9.\-:[\]]{1,255}$/;
const CONTENT_TYPE_PART = /^[a-z0-9][a-z0-9.+-]{0,126}$/;
/** A temp file untouched this long belongs to no live upload (uploads write continuously). */
const STALE_TEMP_MS = 3600_000;

/** The written file's length and SHA-256 (hex). */
export interface WrittenFile {
  size: number;
  sha256: string;
}

export class MediaFileStore {
  private readonly tmpDir: string;

  constructor(readonly root: string) {
    this.tmpDir = join(root, "tmp");
  }

  /**
   * Creates the store's directory and removes temp files a crash left behind: those older than an hour, since
   * another process sharing the store may be writing the newer ones.
   */
  async start(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    const cutoff = Date.now() - STALE_TEMP_MS;
    for (const name of await readdir(this.tmpDir)) {
      const path = join(this.tmpDir, name);
      const st = await stat(path).catch(() => undefined);
      if (st && st.mtimeMs < cutoff) await rm(path, { recursive: true, force: true });
    }
  }

  localContent(mediaId: string): string {
    return join(this.root, "local_content", ...split(mediaId));
  }

  localThumbnailDir(mediaId: string): string {
    return join(this.root, "local_thumbnails", ...split(mediaId));
  }

  localThumbnail(mediaId: string, t: ThumbnailKey): string {
    return join(this.localThumbnailDir(mediaId), thumbnailName(t));
  }

  remoteContent(server: string, filesystemId: string): string {
    return join(this.root, "remote_content", serverDir(server), ...split(filesystemId));
  }

  remoteThumbnailDir(server: string, filesystemId: string): string {
    return join(this.root, "remote_thumbnail", serverDir(server), ...split(filesystemId));
  }

  remoteThumbnail(server: string, filesystemId: string, t: ThumbnailKey): string {
    return join(this.remoteThumbnailDir(server, filesystemId), thumbnailName(t));
  }

  /**
   * Streams `source` to `target` (durably, see above), refusing with 413 M_TOO_LARGE once it passes `maxBytes`. A
   * Readable source is piped, never destroyed: on failure the caller decides what becomes of the rest of it (an HTTP
   * request body is drained so the client reads our answer).
   */
  async write(target: string, source: Readable | Buffer, maxBytes: number): Promise<WrittenFile> {
    const hash = createHash("sha256");
    let size = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > maxBytes) return cb(tooLarge("Upload request body is too large"));
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    const input = Buffer.isBuffer(source) ? Readable.from([source]) : detach(source);
    await this.writeWith(() => target, async (tmp) => {
      const fh = await open(tmp, "wx", 0o644);
      try {
        await pipeline(input, counter, async (chunks: AsyncIterable<Buffer>) => {
          for await (const chunk of chunks) {
            // write() may write less than asked (a signal, a full disk): go on until all of it is down.
            for (let off = 0; off < chunk.length; ) off += (await fh.write(chunk, off)).bytesWritten;
          }
        });
        await fh.sync();
      } finally {
        await fh.close();
      }
    });
    return { size, sha256: hash.digest("hex") };
  }

  /**
   * Lets `produce` write a temp file (the thumbnailer writes its output there), then fsyncs it and moves it to
   * `targetOf(what produce returned)` (a thumbnail's name holds its size, known once it is made). On failure
   * nothing is left behind.
   */
  async writeWith<T>(targetOf: (out: T) => string, produce: (tmpPath: string) => Promise<T>): Promise<T> {
    const tmp = join(this.tmpDir, randomBytes(12).toString("hex"));
    try {
      const out = await produce(tmp);
      const fh = await open(tmp, "r");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      const target = targetOf(out);
      const dir = dirname(target);
      await mkdir(dir, { recursive: true });
      await rename(tmp, target);
      await syncDir(dir);
      return out;
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  read(path: string): ReadStream {
    return createReadStream(path);
  }

  async remove(path: string): Promise<void> {
    await rm(path, { recursive: true, force: true });
  }
}

/** What names a thumbnail file. */
export interface ThumbnailKey {
  width: number;
  height: number;
  type: string;
  method: string;
}

/** Synapse's name for a thumbnail file: `{width}-{height}-{top level type}-{sub type}-{method}`. */
function thumbnailName(t: ThumbnailKey): string {
  const [top, sub, ...rest] = t.type.toLowerCase().split("/");
  if (!Number.isInteger(t.width) || !Number.isInteger(t.height) || t.width < 1 || t.height < 1) throw new Error(`bad thumbnail size ${t.width}x${t.height}`);
  if (rest.length > 0 || !top || !sub || !CONTENT_TYPE_PART.test(top) || !CONTENT_TYPE_PART.test(sub)) throw new Error(`bad thumbnail type ${JSON.stringify(t.type)}`);
  if (t.method !== "crop" && t.method !== "scale") throw new Error(`bad thumbnail method ${JSON.stringify(t.method)}`);
  return `${t.width}-${t.height}-${top}-${sub}-${t.method}`;
}

/** "abcdefgh…" → ["ab", "cd", "efgh…"], for an id Myelin generated (anything else is a bug, and refused). */
function split(id: string): [string, string, string] {
  if (!GENERATED_ID.test(id)) throw new Error(`not a generated media id: ${JSON.stringify(id)}`);
  return [id.slice(0, 2), id.slice(2, 4), id.slice(4)];
}

function serverDir(server: string): string {
  if (!SERVER_DIR.test(server) || server.includes("..")) throw new Error(`not a server name usable as a directory: ${JSON.stringify(server)}`);
  return server;
}

/**
 * A stream to pipe `source` into that fails when `source` fails or ends early (a client that went away), while
 * `source` itself is only ever unpiped, never destroyed, by what happens downstream.
 */
function detach(source: Readable): PassThrough {
  const pass = new PassThrough();
  let ended = false;
  source.once("end", () => (ended = true));
  source.once("error", (e: Error) => pass.destroy(e));
  source.once("close", () => {
    // The client went away mid-upload: nobody will read the answer, but it is a client error, not ours.
    if (!ended) pass.destroy(new MatrixError(400, "M_UNKNOWN", "The upload ended before its body did"));
  });
  pass.once("close", () => source.unpipe(pass));
  source.pipe(pass);
  return pass;
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
