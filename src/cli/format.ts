export { formatBytes } from '../bytes.js';
