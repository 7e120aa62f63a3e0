/**
 * A multer StorageEngine that streams the form's file part straight into store.put: no temporary
 * file, no buffer of the whole part.
 *
 * The new version must exist only if the whole request succeeds, and multer can still fail the
 * request after the file part has ended (a second file, too many fields, a form cut short before
 * its last boundary). So the body handed to the store does not end with the part: once the part's
 * bytes are in, it waits for the route to commit (the form parsed completely) or for the upload to
 * be discarded (multer calls _removeFile when it fails the request; the route discards when the
 * response closes), and only then returns, or throws so that the put commits nothing.
 *
 * multer is told the file is handled as soon as its bytes are in (not when the put commits), or it
 * would wait for the put, which waits for multer: a deadlock on every failed form.
 */
import type { Request } from 'express';
import type { Readable } from 'node:stream';
import type multer from 'multer';
import { StoreError, STORE_ERRORS } from '../engine/store/errors.js';
import type { BlobVersion, PutOptions, StoreClient } from '../engine/store/types.js';
import { isTempestError, TempestError } from '../engine/util/errors.js';
import { HTTP_ERRORS } from './errors.js';
import { countedChunks } from './upload-body.js';

/** What the route decided before the form is read: where the file goes, with which conditions. */
export interface UploadPlan {
  key: string;
  options: PutOptions;
}

interface Upload {
  /** Lets the body end, so the put can commit. */
  release(): void;
  /** Makes the body fail, so the put commits nothing. */
  refuse(err: Error): void;
  result: Promise<BlobVersion>;
}

/** Form fields that, sent before the file part, give its checksums (as the headers of a PUT do). */
const CHECKSUM_FIELDS = { 'content-md5': 'md5_base64', 'x-checksum-sha256': 'sha256' } as const;

type HandleFileCallback = (error?: unknown, info?: Partial<Express.Multer.File>) => void;

export class StoreStorage implements multer.StorageEngine {
  private readonly plans = new WeakMap<Request, UploadPlan>();
  private readonly uploads = new WeakMap<Request, Upload>();

  constructor(
    private readonly store: StoreClient,
    private readonly onBytes: (n: number) => void,
  ) {}

  /** Sets where the request's file part goes; call before running multer on it. */
  plan(req: Request, plan: UploadPlan): void {
    this.plans.set(req, plan);
  }

  /** True once the request's file part has started into the store. */
  has(req: Request): boolean {
    return this.uploads.has(req);
  }

  /** The whole form parsed: lets the put finish and returns its version. */
  commit(req: Request): Promise<BlobVersion> {
    const upload = this.uploads.get(req);
    if (!upload) return Promise.reject(new TempestError(HTTP_ERRORS.INTERNAL, 'commit of a request with no upload'));
    upload.release();
    return upload.result;
  }

  /** Fails a pending put (a no-op once committed or when there is none). */
  discard(req: Request): void {
    this.uploads.get(req)?.refuse(new StoreError(STORE_ERRORS.ABORTED, 'the request ended before its form was complete'));
  }

  _handleFile(req: Request, file: Express.Multer.File, cb: HandleFileCallback): void {
    const plan = this.plans.get(req);
    if (!plan) {
      file.stream.resume();
      cb(new TempestError(HTTP_ERRORS.INTERNAL, 'a file part reached the store engine with no upload plan'));
      return;
    }
    let reported = false;
    const report: HandleFileCallback = (error, info) => {
      if (reported) return;
      reported = true;
      cb(error, info);
    };
    let release!: () => void;
    let refuse!: (err: Error) => void;
    const gate = new Promise<void>((resolve, reject) => {
      release = resolve;
      refuse = reject;
    });
    // Refused after a commit (or never awaited, when the put failed first): nobody is waiting.
    gate.catch(() => {});
    let size = 0;
    const count = (n: number): void => {
      size += n;
      this.onBytes(n);
    };
    const options: PutOptions = { ...plan.options, ...checksumFields(req.body), content_type: file.mimetype };
    const result = this.store.put(plan.key, gatedBody(file.stream, count, () => report(null, { size }), gate), options);
    this.uploads.set(req, { release, refuse, result });
    result.catch((err: unknown) => {
      // Let busboy go on past the rest of the part (multer then fails the request).
      file.stream.resume();
      report(isTempestError(err) ? err : new TempestError(HTTP_ERRORS.INTERNAL, 'the upload failed', { cause: err }));
    });
  }

  _removeFile(req: Request, _file: Express.Multer.File, cb: (error: Error | null) => void): void {
    const upload = this.uploads.get(req);
    if (!upload) {
      cb(null);
      return;
    }
    upload.refuse(new StoreError(STORE_ERRORS.ABORTED, 'the form failed after its file part'));
    upload.result.then(
      () => cb(null),
      () => cb(null),
    );
  }
}

async function* gatedBody(part: Readable, onBytes: (n: number) => void, onPartEnd: () => void, gate: Promise<void>): AsyncGenerator<Buffer> {
  yield* countedChunks(part, onBytes);
  // busboy cuts a part at the file size limit and ends it normally, marking it truncated.
  if ((part as Readable & { truncated?: boolean }).truncated) throw new StoreError(STORE_ERRORS.TOO_LARGE, 'the file part is over the size limit');
  onPartEnd();
  await gate;
}

function checksumFields(body: unknown): Partial<PutOptions> {
  const out: Partial<PutOptions> = {};
  if (typeof body !== 'object' || body === null) return out;
  for (const [field, option] of Object.entries(CHECKSUM_FIELDS)) {
    const value = (body as Record<string, unknown>)[field];
    if (typeof value === 'string') out[option] = value;
  }
  return out;
}
