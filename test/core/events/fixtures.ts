/** Typed loaders for test/fixtures/events (see its README.md for the source and meaning of each field). */
import { readFileSync } from "node:fs";
import type { JsonObject } from "../../../src/core/json/types.js";

export function readFixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../../fixtures/events/${name}`, import.meta.url), "utf8")) as T;
}

export interface SignedEventVector {
  room_version: string;
  description: string;
  scenario_label: string;
  event_id: string;
  pdu: JsonObject;
  content_hash: string;
  content_hash_input: string;
  reference_hash: string;
  reference_hash_event_id: string | null;
  redacted: JsonObject;
  canonical_json_of_redacted_without_signatures_unsigned: string;
  signature: { server_name: string; key_id: string; signature: string };
  redaction_changes_event: boolean;
}

export interface SignedEvents {
  server_name: string;
  server_key: { server_name: string; key_id: string; public_key_unpadded_base64: string; key_v2_server_response: JsonObject };
  rooms: { room_version: string; room_id: string; event_count: number }[];
  events: SignedEventVector[];
}

export interface CanonicalJsonVectors {
  valid: { name: string; input: string; canonical: string; canonical_utf8_hex: string }[];
  integral_numbers_in_non_integer_syntax: { name: string; input: string; spec_canonical_if_normalised: string }[];
  must_reject: { name: string; input: string; spec_reason: string }[];
  spec_canonical_json_examples: { input: string; expected: string }[];
  spec_signing_test_vectors: {
    seed_unpadded_base64: string;
    server_name: string;
    key_id: string;
    public_key_unpadded_base64: string;
    json_signing: { input: JsonObject; signing_input: string; expected: JsonObject }[];
    event_signing: { input: JsonObject; expected: JsonObject; content_hash_input: string; redacted_signing_input: string }[];
  };
}

export interface NonStrictNumberEvents {
  server_key: { server_name: string; key_id: string; public_key_unpadded_base64: string };
  events: {
    room_version: string;
    event_id?: string;
    pdu_json_text?: string;
    content_hash?: string;
    content_hash_input?: string;
    redacted?: JsonObject;
    canonical_json_of_redacted_without_signatures_unsigned?: string;
    signature?: { server_name: string; key_id: string; signature: string };
  }[];
}
