// The type a sheep-runtime dashboard JSON must satisfy: Grafana's own `Dashboard`
// (@grafana/schema), narrowed so that each panel's `options` and `fieldConfig` are checked
// against the schema of its panel plugin, and its targets against a Prometheus query.
// scripts/check-dashboard.sh appends `export const d = <the JSON> satisfies SheepDashboard;`
// and runs `tsc --noEmit --strict`: an unknown key or a wrong type anywhere fails.
import type { Dashboard, DataSourceRef, FieldConfig, FieldConfigSource, Panel, RowPanel } from '@grafana/schema';
import type * as bargauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

// JSON has no enums: a string enum accepts its values as plain strings ("absolute" for
// ThresholdsMode.Absolute), and nothing else. Numeric enums already accept their values.
export type Json<T> =
  T extends string ? `${T}` :
  T extends ReadonlyArray<infer U> ? Array<Json<U>> :
  T extends object ? { [K in keyof T]: Json<T[K]> } :
  T;

// A Prometheus query as Grafana stores it.
export interface PromTarget {
  refId: string;
  expr: string;
  datasource?: DataSourceRef;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  editorMode?: 'code' | 'builder';
  exemplar?: boolean;
  interval?: string;
  intervalFactor?: number;
  hide?: boolean;
}

type Defaults<Custom> = Omit<FieldConfig, 'custom'> & { custom?: Custom };
type FieldConfigOf<Custom> = Omit<FieldConfigSource, 'defaults'> & { defaults: Defaults<Custom> };

type PanelOf<Type extends string, Options, Custom> =
  Omit<Json<Panel>, 'type' | 'options' | 'fieldConfig' | 'targets'> & {
    type: Type;
    options?: Json<Options>;
    fieldConfig?: Json<FieldConfigOf<Custom>>;
    targets?: PromTarget[];
  };

// The panel plugins the dashboards use; add one here (with its panelcfg types) to use it.
export type SheepPanel =
  | PanelOf<'timeseries', timeseries.Options, timeseries.FieldConfig>
  | PanelOf<'stat', stat.Options, Record<string, never>>
  | PanelOf<'bargauge', bargauge.Options, Record<string, never>>;

export type SheepRow = Omit<Json<RowPanel>, 'panels'> & { panels: SheepPanel[] };

export type SheepDashboard = Omit<Json<Dashboard>, 'panels'> & {
  uid: string;
  title: string;
  panels: Array<SheepPanel | SheepRow>;
};
