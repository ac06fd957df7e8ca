/**
 * Password hashing: argon2id for new hashes; bcrypt hashes (Synapse's format, `$2b$…`) still verify, so a Synapse
 * user table can be imported. The optional pepper is Synapse's `password_config.pepper`, appended before hashing.
 */
import argon2 from "argon2";
import bcrypt from "bcryptjs";
import type { Config, PasswordPolicy } from "../config/config.js";
import { MatrixError } from "../errors.js";

export class PasswordHasher {
  constructor(private readonly cfg: Pick<Config, "password" | "passwordHashing">) {}

  hash(password: string): Promise<string> {
    const { memoryKib, iterations, parallelism } = this.cfg.passwordHashing;
    return argon2.hash(password + this.cfg.password.pepper, { type: argon2.argon2id, memoryCost: memoryKib, timeCost: iterations, parallelism });
  }

  async verify(password: string, hash: string | null): Promise<boolean> {
    if (!hash) return false;
    const peppered = password + this.cfg.password.pepper;
    try {
      if (hash.startsWith("$argon2")) return await argon2.verify(hash, peppered);
      if (/^\$2[aby]\$/.test(hash)) return await bcrypt.compare(peppered, hash);
    } catch {
      return false;
    }
    return false;
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
