/**
 * Password hashing: argon2id for new hashes; bcrypt hashes (Synapse's format, `$2b$…`) still verify, so a Synapse
 * user table can be imported. The optional pepper is Synapse's `password_config.pepper`, appended before hashing.
 */
import argon2 from "argon2";
import type { Config, PasswordPolicy } from "../config/config.js";
import { MatrixError } from "../errors.js";

/**
 * How many hashes run at once. Each argon2id hash holds its whole memory cost (64 MiB by default) while it runs, so
 * a burst of registrations or logins must queue rather than multiply it; one at a time also leaves the other core
 * to the server.
 */
const CONCURRENT_HASHES = 1;

export class PasswordHasher {
  private running = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly cfg: Pick<Config, "password" | "passwordHashing">) {}

  hash(password: string): Promise<string> {
    const { memoryKib, iterations, parallelism } = this.cfg.passwordHashing;
    return this.queued(() => argon2.hash(password + this.cfg.password.pepper, { type: argon2.argon2id, memoryCost: memoryKib, timeCost: iterations, parallelism }));
  }

  async verify(password: string, hash: string | null): Promise<boolean> {
    if (!hash) return false;
    const peppered = password + this.cfg.password.pepper;
    try {
      if (hash.startsWith("$argon2")) return await this.queued(() => argon2.verify(hash, peppered));
      // bcryptjs is loaded only by a server holding imported Synapse hashes.
      if (/^\$2[aby]\$/.test(hash)) {
        const { default: bcrypt } = await import("bcryptjs");
        return await this.queued(() => bcrypt.compare(peppered, hash));
      }
    } catch {
      return false;
    }
    return false;
  }

  /** Hashes waiting for their turn (a metric). */
  get waiting(): number {
    return this.queue.length;
  }

  /** Runs `f` in a free slot; a finishing hash hands its slot straight to the next in line. */
  private async queued<T>(f: () => Promise<T>): Promise<T> {
    if (this.running >= CONCURRENT_HASHES) await new Promise<void>((r) => this.queue.push(r));
    else this.running++;
    try {
      return await f();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/** Synapse's password_config.policy; failing it is 400 M_WEAK_PASSWORD. */
export function checkPasswordPolicy(policy: PasswordPolicy, password: string): void {
  if (!policy.enabled) return;
  const weak = (why: string) => new MatrixError(400, "M_WEAK_PASSWORD", why);
  if (password.length < policy.minimumLength) throw weak(`Password must be at least ${policy.minimumLength} characters`);
  if (policy.requireDigit && !/[0-9]/.test(password)) throw weak("Password must contain a digit");
  if (policy.requireSymbol && !/[^A-Za-z0-9]/.test(password)) throw weak("Password must contain a symbol");
  if (policy.requireLowercase && !/[a-z]/.test(password)) throw weak("Password must contain a lowercase letter");
  if (policy.requireUppercase && !/[A-Z]/.test(password)) throw weak("Password must contain an uppercase letter");
}
