/** Realistic sample camera cards for tests, the benchmark and `shuttle sample`. */
export { makeSampleCard, DEFAULT_SAMPLE_CAMERA, type SampleCamera, type SampleCard, type SampleCardOptions, type SampleFile } from './card.js';
