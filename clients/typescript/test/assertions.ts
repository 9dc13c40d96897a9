// Assertions shared by the unit tests and the e2e suite.

import assert from "node:assert/strict";
import { PersonaError } from "../src/index.js";

/** The PersonaError a call must fail with. */
export async function personaFailure(promise: Promise<unknown>): Promise<PersonaError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof PersonaError, `want a PersonaError, got ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded");
}
