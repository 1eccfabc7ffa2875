import React, { useRef } from 'react';
import { useTheme2 } from '@grafana/ui';

import { SqlToken, tokenize } from '../highlight';

interface Props {
  value: string;
  placeholder: string;
  /** The new text and where the cursor is. */
  onChange: (value: string, cursor: number | undefined) => void;
  /** The cursor moved (click, arrow keys, selection). */
  onCursor: (cursor: number | undefined) => void;
  onBlur: () => void;
}

/**
 * A SQL text field with highlighting: a transparent textarea (what the user types into, with
 * its caret, selection and accessibility) over a <pre> that draws the same text coloured, with
 * the same font, padding and wrapping, scrolled together.
 */
export function SqlField({ value, placeholder, onChange, onCursor, onBlur }: Props) {
  const theme = useTheme2();
  const behind = useRef<HTMLPreElement>(null);
  const colors: Record<SqlToken['kind'], string> = {
    keyword: theme.colors.primary.text,
    string: theme.visualization.getColorByName('green'),
    number: theme.visualization.getColorByName('orange'),
    macro: theme.visualization.getColorByName('purple'),
    comment: theme.colors.text.secondary,
    plain: theme.colors.text.primary,
  };
  const shared: React.CSSProperties = {
    fontFamily: theme.typography.fontFamilyMonospace,
    fontSize: 14,
    lineHeight: '20px',
    padding: '6px 8px',
    margin: 0,
    border: `1px solid ${theme.components.input.borderColor}`,
    borderRadius: theme.shape.radius.default,
    whiteSpace: 'pre-wrap',
    overflowWrap: 'anywhere',
    boxSizing: 'border-box',
    width: '100%',
  };
  return (
    <div style={{ position: 'relative', background: theme.components.input.background }}>
      <pre
        ref={behind}
        aria-hidden
        style={{ ...shared, position: 'absolute', inset: 0, overflow: 'hidden', pointerEvents: 'none', background: 'none' }}
      >
        {tokenize(value).map((t, i) => (
          <span key={i} style={{ color: colors[t.kind] }}>
            {t.text}
          </span>
        ))}
        {'\n'}
      </pre>
      <textarea
        aria-label="SQL"
        rows={6}
        spellCheck={false}
        value={value}
        placeholder={placeholder}
        style={{
          ...shared,
          position: 'relative',
          display: 'block',
          resize: 'vertical',
          background: 'transparent',
          color: 'transparent',
          caretColor: theme.colors.text.primary,
        }}
        onChange={(event) => onChange(event.currentTarget.value, event.currentTarget.selectionStart ?? undefined)}
        onSelect={(event) => onCursor(event.currentTarget.selectionStart ?? undefined)}
        onScroll={(event) => {
          if (behind.current) {
            behind.current.scrollTop = event.currentTarget.scrollTop;
          }
        }}
        onBlur={onBlur}
      />
    </div>
  );
}
