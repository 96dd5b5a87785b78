export * from './jobcast-gateway';
