// @grafana/ui's Icon loads each SVG over fetch through react-inlinesvg; jsdom has no server for
// it, and the late state update floods the output with act() warnings. Render an empty <svg>.
const React = require('react');

module.exports = { __esModule: true, default: () => React.createElement('svg') };
