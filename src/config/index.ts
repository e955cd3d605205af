export { loadConfig, normalizeConfig, readConfigFile, type LoadConfigOptions } from './load.js';
export { configEnvVariables, envVariablesHelp, unknownEnvVariables, ENV_PREFIX, type EnvVariable } from './env.js';
export { resolveStateDir, type StateDirInputs } from './state-dir.js';
export {
  DEFAULT_TEMPLATE,
  LOG_LEVELS,
  MANIFEST_HASHES,
  type Config,
  type ConfigInput,
  type DestinationConfig,
  type IngestConfig,
  type LogLevel,
  type ManifestHash,
  type UploadConfig,
  type WipePolicy,
  WIPE_POLICIES,
  type PedalConfig,
  type StatusLightConfig,
  type SoundConfig,
  type ApiConfig,
  parseListen,
  uploadSettings,
  ALERT_KINDS,
  type AlertKind,
  type EventsConfig,
  type NotifyConfig,
} from './schema.js';
export { resolveSecret, type SecretSpec } from './secrets.js';
