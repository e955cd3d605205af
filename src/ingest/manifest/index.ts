export { writeGeneration } from './write.js';
export { readHistory } from './read.js';
export { parseGeneration, parseChain, type ChainLink } from './parse.js';
export { c4FromSha512, c4OfBytes, isC4Id, C4Hasher } from './c4.js';
export { compileIgnore, type IgnoreMatcher } from './ignore.js';
export { ASCMHL_FOLDER, CHAIN_FILE_NAME, generationFileName, sequenceOfFileName } from './naming.js';
export * from './types.js';
