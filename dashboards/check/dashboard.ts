// Grafana's dashboard schema as a TypeScript type for JSON: tests/dashboards writes one file per
// dashboard, `import type { DashboardJson } from "./dashboard"; export const d: DashboardJson = <the JSON>;`,
// and `tsc --strict` then rejects unknown keys (a misspelt "gridpos"), missing required ones and
// values outside Grafana's enums, with Grafana's own types from @grafana/schema.
import type { Dashboard } from "@grafana/schema";

// JSON holds an enum member's value, not the TypeScript enum: map every string enum to its values.
type Json<T> = T extends string ? `${T}`
  : T extends (infer U)[] ? Json<U>[]
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;

export type DashboardJson = Json<Dashboard>;
