#!/usr/bin/env node
// The `calendar` plugin on stdin/stdout: what its manifest runs. The handlers live in
// `handlers.ts`; `calendar-nats.ts` serves the very same handlers over NATS.
import * as PluginWorker from "../../../src/PluginWorker.ts"
import { handlers } from "./handlers.ts"

PluginWorker.main({ name: "calendar", handlers })
